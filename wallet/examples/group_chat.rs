//! A group chat of three where one member asks the others for money.
//!
//! Alice posts a payment request for 12.50 ("rent for March") in the group;
//! Bob's app shows it as a "Pay" button, he pays it; Alice's app sees it
//! paid from the request's reference alone (no message from Bob needed) and
//! reads the memo, which only the two of them can. Carol, the third member,
//! and every validator see ciphertext. A second tap on the same link, an
//! expired link and a link of another network are refused.
//!
//! ```sh
//! cargo run -p chatpay-wallet --example group_chat
//! ```
//! It starts its own 4-validator network in this process (on 127.0.0.1),
//! so it needs nothing else running.

use chatpay_tests::LocalNetwork;
use chatpay_wallet::memo::{self, MemoText};
use chatpay_wallet::{KdfParams, PaymentRequest, Wallet, WalletError, WalletHome};
use std::sync::Arc;
use std::time::Duration;

/// What a chat app shows in the group.
fn post(who: &str, text: &str) {
    println!("[group] {who:>6}: {text}");
}

#[tokio::main]
async fn main() -> Result<(), WalletError> {
    let net = LocalNetwork::start(4).await;
    let dir = tempfile::tempdir().map_err(|e| WalletError::io("tempdir".as_ref(), e))?;
    // Cheap key-file encryption for a demo; real apps keep the default.
    let kdf = KdfParams {
        m_kib: 1024,
        t: 1,
        p: 1,
    };
    let open = |name: &str| {
        let (home, _phrase) = WalletHome::create(&dir.path().join(name), "pw", kdf)?;
        Ok::<_, WalletError>(home.with_kdf(kdf))
    };
    let bob_home = open("bob")?;
    bob_home.import_key("faucet", &net.faucet, "pw")?;
    let alice = Arc::new(Wallet::connect(open("alice")?, &net.urls()).await?);
    let bob = Wallet::connect(bob_home, &net.urls()).await?;
    let carol = Wallet::connect(open("carol")?, &net.urls()).await?;
    let (alice_me, bob_me, carol_me) = (
        alice.signer("default", "pw")?,
        bob.signer("default", "pw")?,
        carol.signer("default", "pw")?,
    );
    let faucet = bob.signer("faucet", "pw")?;
    bob.pay(&faucet, &bob_me.address, 100_000_000, "").await?;

    // Alice asks the group for her share of the rent.
    let request = PaymentRequest {
        amount: Some(alice.chain().parse_amount("12.50")?),
        memo: Some("rent for March".into()),
        label: Some("Alice".into()),
        ..PaymentRequest::new(alice_me.address.clone(), alice.chain(), 24 * 3_600)
    };
    let link = request.to_link(alice.chain());
    post("Alice", "Rent is due, 12.50 each please 🏠");
    post("Alice", &link);
    // Her app follows the request by its reference, and opens the memos
    // sent to her.
    alice.read_memos_of(&alice_me);
    let tracking = tokio::spawn({
        let (alice, request) = (alice.clone(), request.clone());
        async move {
            alice
                .wait_request_paid(&request, Duration::from_secs(60))
                .await
        }
    });

    // Bob's app recognises the link and offers to pay it.
    let seen = PaymentRequest::parse(&link, bob.chain())?;
    post("app", "[Pay 12.50 CPY to Alice — rent for March]");
    let paid = bob.pay_request(&bob_me, &seen, None, false).await?;
    post("Bob", &format!("Paid ✔ final in block {}", paid.height));

    // Alice's app shows the request paid, from its own verification.
    let got = tracking
        .await
        .map_err(|e| WalletError::Invalid(e.to_string()))??;
    post(
        "app",
        &format!(
            "Alice's request: paid ✔ {} by Bob for \"{}\" (block {})",
            alice.chain().format(got.amount),
            got.memo,
            got.payment.height
        ),
    );

    // What Carol's app and the validators hold: ciphertext.
    let record = net
        .store(0)
        .transaction(&paid.tx_id)
        .map_err(|e| WalletError::Invalid(e.to_string()))?
        .ok_or_else(|| WalletError::Invalid("not stored".into()))?;
    let transfer = record.transaction.transfer();
    let carol_sees = memo::read(transfer, Some(carol_me.key()));
    assert_eq!(carol_sees, MemoText::Encrypted);
    post(
        "app",
        &format!(
            "Carol's view of the memo: {} ({} bytes on every validator)",
            carol_sees.display(),
            transfer.memo().bytes().len()
        ),
    );

    // A second tap on the link, an expired link, and another network's.
    let again = bob.pay_request(&bob_me, &seen, None, false).await;
    post("app", &format!("Bob taps again: {}", again.unwrap_err()));
    let expired = PaymentRequest {
        expires_at: Some(chatpay_wallet::unix_now_secs() - 3_600),
        ..seen.clone()
    };
    let late = bob.pay_request(&bob_me, &expired, None, false).await;
    post("app", &format!("An old link: {}", late.unwrap_err()));
    let elsewhere = link.replace(
        &format!("net={}", &alice.chain().genesis_hash[..16]),
        "net=0123456789abcdef",
    );
    let wrong = PaymentRequest::parse(&elsewhere, bob.chain());
    post("app", &format!("A testnet link: {}", wrong.unwrap_err()));
    net.shutdown().await;
    Ok(())
}
