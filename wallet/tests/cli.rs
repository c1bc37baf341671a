//! The `chatpay` CLI against a real 4-validator network: the whole flow a
//! person goes through, and every error path with the message they see.

use chatpay_tests::LocalNetwork;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_chatpay");

struct Cli {
    nodes: String,
}

impl Cli {
    fn run(&self, home: &Path, password: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("CHATPAY_HOME", home)
            .env("CHATPAY_NODES", &self.nodes)
            .env("CHATPAY_PASSWORD", password)
            .env_remove("CHATPAY_ACCOUNT")
            .output()
            .unwrap()
    }

    /// Runs with --json and expects success.
    fn ok(&self, home: &Path, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(home, "pw", &all);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Runs and expects failure; returns stderr.
    fn fails(&self, home: &Path, password: &str, args: &[&str]) -> String {
        let out = self.run(home, password, args);
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pays_requests_watches_and_explains_its_errors() {
    let net = LocalNetwork::start(4).await;
    let cli = Cli {
        nodes: net.urls().join(","),
    };
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));

    // Wallets; Alice also holds the faucet key (as with `make devnet`).
    let created = cli.ok(&alice, &["init"]);
    assert_eq!(created["phrase"].as_str().unwrap().split(' ').count(), 12);
    cli.ok(&bob, &["init"]);
    let key_file = dir.path().join("faucet.key");
    std::fs::write(&key_file, hex::encode(net.faucet.to_bytes())).unwrap();
    cli.ok(
        &alice,
        &[
            "accounts",
            "import",
            "faucet",
            "--key-file",
            key_file.to_str().unwrap(),
        ],
    );
    let accounts = cli.ok(&alice, &["accounts"]);
    assert_eq!(accounts["accounts"].as_array().unwrap().len(), 2);
    let alice_addr = cli.ok(&alice, &["address"])["address"]
        .as_str()
        .unwrap()
        .to_string();
    let bob_addr = cli.ok(&bob, &["address"])["address"]
        .as_str()
        .unwrap()
        .to_string();

    // Fund Alice from the faucet, then pay Bob; split; request and pay.
    let paid = cli.ok(
        &alice,
        &[
            "send",
            &alice_addr,
            "50",
            "--account",
            "faucet",
            "--memo",
            "hi",
        ],
    );
    assert_eq!(paid["success"], true);
    let paid = cli.ok(&alice, &["send", &bob_addr, "5.5", "--memo", "lunch"]);
    assert_eq!(paid["amount"], 5_500_000);
    cli.ok(&dir.path().join("carol"), &["init"]);
    let carol_addr = cli.ok(&dir.path().join("carol"), &["address"])["address"]
        .as_str()
        .unwrap()
        .to_string();
    let split = cli.ok(
        &alice,
        &["split", "3", &bob_addr, &carol_addr, "--memo", "bill"],
    );
    assert_eq!(split["amount"], 3_000_000);
    let link = cli.ok(
        &bob,
        &["request", "1.25", "--memo", "pizza", "--label", "Bob"],
    )["link"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        link.starts_with("chatpay:cp1") && link.contains("amount=1.25"),
        "{link}"
    );
    let qr = cli.run(&bob, "pw", &["request", "1", "--qr"]);
    assert!(String::from_utf8_lossy(&qr.stdout).contains('█'));
    // Bob's app asks whether it is paid: not yet, then paid, with the memo
    // encrypted for him.
    assert_eq!(cli.ok(&bob, &["paid", &link])["paid"], false);
    // Told of one validator only, as the quick start's wallet is, it
    // answers too (from that validator alone).
    let first = cli.nodes.split(',').next().unwrap().to_string();
    let one = cli.ok(&bob, &["--node", &first, "paid", &link]);
    assert_eq!(one["paid"], false, "{one}");
    cli.ok(&alice, &["pay", &link]);
    let paid = cli.ok(&bob, &["paid", &link]);
    assert_eq!(
        (&paid["paid"], &paid["memo"], &paid["memo_encrypted"]),
        (
            &Value::from(true),
            &Value::from("pizza"),
            &Value::from(true)
        ),
        "{paid}"
    );
    // Paid once: a second payment of the link is refused, and so are an
    // expired link and a link of another network.
    let e = cli.fails(&alice, "pw", &["pay", &link]);
    assert!(e.contains("this request is already paid"), "{e}");
    let exp = link
        .split("exp=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let expired = link.replace(&format!("exp={exp}"), "exp=1000");
    let e = cli.fails(&alice, "pw", &["pay", &expired]);
    assert!(e.contains("this payment request expired"), "{e}");
    let network = link
        .split("net=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let elsewhere = link.replace(&format!("net={network}"), "net=0123456789abcdef");
    let e = cli.fails(&alice, "pw", &["pay", &elsewhere]);
    assert!(e.contains("this link is for another network"), "{e}");
    let e = cli.fails(&bob, "pw", &["request", "1", "--expires", "soon"]);
    assert!(e.contains("--expires must be a positive duration"), "{e}");
    let balance = cli.ok(&bob, &["balance"]);
    assert_eq!(balance["balance"], 5_500_000 + 1_500_000 + 1_250_000);
    let history = cli.ok(&bob, &["history"]);
    assert_eq!(history["transactions"].as_array().unwrap().len(), 3);
    // Alice's history: funded, paid Bob, split with Carol, paid the link.
    // Pages go back with --before; each row names the other side.
    let page = cli.ok(&alice, &["history", "--limit", "2"]);
    let rows = page["transactions"].as_array().unwrap();
    let numbers: Vec<u64> = rows.iter().map(|r| r["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [4, 3]);
    assert_eq!(rows[1]["to"], serde_json::json!([bob_addr, carol_addr]));
    assert_eq!(rows[1]["memo"], "bill");
    let older = cli.ok(&alice, &["history", "--before", "3"]);
    let numbers: Vec<u64> = older["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [2, 1]);
    let all = cli.ok(&alice, &["history", "--all"]);
    assert_eq!(all["transactions"].as_array().unwrap().len(), 4);
    assert_eq!(page["next_before"], 3);
    let out = cli.run(&alice, "pw", &["history", "--before", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no entries before #1 (4 in all"), "{text}");
    // A memo too long for a transfer makes no link (nobody could pay it).
    let e = cli.fails(&bob, "pw", &["request", "1", "--memo", &"m".repeat(300)]);
    assert!(
        e.contains("cannot make the link") && e.contains("memo"),
        "{e}"
    );
    let out = cli.run(&alice, "pw", &["history", "--limit", "2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("to {bob_addr}, {carol_addr}"))
            && text.contains("\"bill\"")
            && text.contains("older: --before 3"),
        "{text}"
    );

    // watch reports each payment once, and resumes after the last one.
    let out = cli.run(&bob, "pw", &["watch", "--count", "3", "--json"]);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let amounts: Vec<u64> = lines
        .iter()
        .map(|l| l["amount"].as_u64().unwrap())
        .collect();
    assert_eq!(amounts, [5_500_000, 1_500_000, 1_250_000]);
    cli.ok(&alice, &["send", &bob_addr, "0.5"]);
    let out = cli.run(&bob, "pw", &["watch", "--count", "1", "--json"]);
    let next: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(next["amount"], 500_000, "watch resumed at the wrong place");
    // A payer's memo cannot draw rows of its own: shown escaped.
    cli.ok(
        &alice,
        &["send", &bob_addr, "0.25", "--memo", "x\n#99 +1000 CPY"],
    );
    let out = cli.run(&bob, "pw", &["history", "--limit", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("\"x\\n#99 +1000 CPY\""), "{text}");

    let status = cli.ok(&alice, &["status"]);
    assert_eq!(status["reachable"], 4);

    // Errors a person can act on.
    let e = cli.fails(&alice, "pw", &["send", &bob_addr, "1000"]);
    assert!(e.contains("insufficient funds: balance 39.495 CPY"), "{e}");
    let mut typo = bob_addr.clone();
    let c = if typo.ends_with('q') { "p" } else { "q" };
    typo.replace_range(typo.len() - 1.., c);
    let e = cli.fails(&alice, "pw", &["send", &typo, "1"]);
    assert!(
        e.contains("invalid address") && e.contains("checksum"),
        "{e}"
    );
    let e = cli.fails(&alice, "pw", &["send", &bob_addr, "1.0000001"]);
    assert!(e.contains("invalid amount \"1.0000001\""), "{e}");
    let e = cli.fails(&alice, "wrong", &["send", &bob_addr, "1"]);
    assert!(e.contains("wrong password"), "{e}");
    let e = cli.fails(
        &alice,
        "pw",
        &["send", &bob_addr, "1", "--account", "nobody"],
    );
    assert!(e.contains("no account named \"nobody\""), "{e}");
    let e = cli.fails(&alice, "pw", &["pay", "bitcoin:abc?amount=1"]);
    assert!(e.contains("invalid payment link"), "{e}");
    // Only a link is called a link: each other bad input names itself.
    let e = cli.fails(&alice, "pw", &["accounts", "new", "no spaces"]);
    assert!(
        e.contains("invalid account name \"no spaces\"") && !e.contains("payment link"),
        "{e}"
    );
    let long = "m".repeat(300);
    let e = cli.fails(&alice, "pw", &["send", &bob_addr, "1", "--memo", &long]);
    assert!(
        e.contains("invalid transfer") && e.contains("memo") && !e.contains("payment link"),
        "{e}"
    );
    let e = cli.fails(&alice, "pw", &["balance", "--node", "not a url"]);
    assert!(
        e.contains("invalid validator URL") && !e.contains("payment link"),
        "{e}"
    );
    let e = cli.fails(&alice, "pw", &["init"]);
    assert!(e.contains("already exists"), "{e}");
    let e = cli.fails(&dir.path().join("nobody"), "pw", &["balance"]);
    assert!(
        e.contains("no wallet in") && e.contains("chatpay init"),
        "{e}"
    );
    let out = Command::new(BIN)
        .args(["balance", "--node", "http://127.0.0.1:1"])
        .env("CHATPAY_HOME", &alice)
        .env_remove("CHATPAY_NODES")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("no validator reachable (tried http://127.0.0.1:1)"),
        "{e}"
    );
    let e = cli.fails(&alice, "pw", &["restore"]);
    assert!(e.contains("invalid recovery phrase"), "{e}");
    // Every payment so far is final: nothing to retry or cancel.
    let out = cli.run(&alice, "pw", &["pending"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing pending"));
    assert_eq!(cli.ok(&alice, &["retry"])["final"], serde_json::json!([]));
    let e = cli.fails(&alice, "pw", &["cancel"]);
    assert!(e.contains("nothing pending to cancel"), "{e}");

    // Accounts can go; removing one says what is lost and needs --yes.
    let e = cli.fails(&alice, "pw", &["accounts", "remove", "faucet"]);
    assert!(
        e.contains("imported key is gone for good") && e.contains("--yes"),
        "{e}"
    );
    cli.ok(&alice, &["accounts", "remove", "faucet", "--yes"]);
    let names: Vec<String> = cli.ok(&alice, &["accounts"])["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["default"]);

    // The network is started over (a devnet reset): the wallet says how to
    // move on, shows both chains, and re-pins only when told to.
    net.shutdown().await;
    let reset = LocalNetwork::start(4).await;
    let cli = Cli {
        nodes: reset.urls().join(","),
    };
    let e = cli.fails(&alice, "pw", &["balance"]);
    assert!(
        e.contains("this wallet is on") && e.contains("chatpay repin"),
        "{e}"
    );
    let e = cli.fails(&alice, "pw", &["repin"]);
    let new_genesis = hex::encode(reset.genesis.hash().0);
    assert!(
        e.contains("the wallet is pinned to") && e.contains(&new_genesis) && e.contains("--yes"),
        "{e}"
    );
    assert!(alice.join("state").join("default.json").exists());
    let pinned = cli.ok(&alice, &["repin", "--yes"]);
    assert_eq!(pinned["pinned"], new_genesis);
    assert_eq!(pinned["changed"], true);
    assert!(
        !alice.join("state").join("default.json").exists(),
        "the old chain's pending transfers and cursor are gone"
    );
    // (A balance is proven once a block has a committed child.)
    reset
        .wait_for(&[0, 1, 2, 3], 3, std::time::Duration::from_secs(30))
        .await;
    let balance = cli.ok(&alice, &["balance"]);
    assert_eq!(balance["balance"], 0, "a new chain: nothing here yet");
    reset.shutdown().await;
}
