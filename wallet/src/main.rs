//! `chatpay`: the command-line wallet (built on the `chatpay-wallet` crate).
//!
//! Every command takes `--home`, `--node` (repeatable), `--account` and
//! `--json`; each has an environment fallback (`CHATPAY_HOME`,
//! `CHATPAY_NODES`, `CHATPAY_ACCOUNT`). Passwords are asked on the terminal,
//! or read from `CHATPAY_PASSWORD` for scripts.

use chatpay_wallet::{
    AccountSource, ChainInfo, KdfParams, Payment, PaymentDetails, PaymentRequest, RecoveryPhrase,
    Signer, Wallet, WalletError, WalletHome,
};
use clap::{Parser, Subcommand};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::StreamExt;

#[derive(Parser)]
#[command(
    name = "chatpay",
    version,
    about = "chatpay wallet: pay and get paid in chats"
)]
struct Cli {
    /// Wallet directory [default: the user's config dir/chatpay].
    #[arg(long, global = true, env = "CHATPAY_HOME")]
    home: Option<PathBuf>,
    /// Validator gRPC address; repeat for fail-over.
    #[arg(
        long = "node",
        global = true,
        env = "CHATPAY_NODES",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:26650"
    )]
    nodes: Vec<String>,
    /// Account to use.
    #[arg(
        long,
        global = true,
        env = "CHATPAY_ACCOUNT",
        default_value = "default"
    )]
    account: String,
    /// Machine-readable output (one JSON object).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a wallet; shows its recovery phrase once.
    Init,
    /// Restore a wallet from its recovery phrase (asked, or CHATPAY_PHRASE).
    Restore,
    /// List accounts, or add one.
    Accounts {
        #[command(subcommand)]
        action: Option<AccountsAction>,
    },
    /// Show the account's address.
    Address,
    /// Show the account's balance.
    Balance,
    /// Pay someone and wait until it is final.
    Send {
        /// Recipient address.
        to: String,
        /// Amount, e.g. 12.50.
        amount: String,
        /// What it is for: encrypted, only you and the recipient can read
        /// it (at most 254 bytes).
        #[arg(long, default_value = "")]
        memo: String,
        /// Send the memo in clear: every validator and anyone reading the
        /// chain sees it, for ever (at most 256 bytes).
        #[arg(long)]
        public_memo: bool,
        /// Fee (default: the chain's minimum).
        #[arg(long)]
        fee: Option<String>,
    },
    /// Split an amount evenly between recipients, in one transfer.
    Split {
        /// Total amount.
        amount: String,
        /// Recipient addresses.
        #[arg(required = true)]
        to: Vec<String>,
        /// What it is for: encrypted for you and every recipient.
        #[arg(long, default_value = "")]
        memo: String,
        /// Send the memo in clear, readable by everyone.
        #[arg(long)]
        public_memo: bool,
    },
    /// Make a payment link to post in a chat: a fresh reference to find
    /// its payment by (`chatpay paid`), an expiry and the network.
    Request {
        /// Amount asked (none: the payer chooses).
        amount: Option<String>,
        /// What it is for (the payer's transfer carries it, encrypted).
        #[arg(long)]
        memo: Option<String>,
        /// Your name as the payer sees it.
        #[arg(long)]
        label: Option<String>,
        /// How long it can be paid: 90s, 30m, 24h, 7d (default 24h).
        #[arg(long, default_value = "24h")]
        expires: String,
        /// Also print a QR code.
        #[arg(long)]
        qr: bool,
    },
    /// Pay a payment link (once: a paid or expired link, or one of another
    /// network, is refused).
    Pay {
        /// The chatpay: link.
        link: String,
        /// Amount, when the link has none.
        #[arg(long)]
        amount: Option<String>,
        /// Send the memo in clear, readable by everyone.
        #[arg(long)]
        public_memo: bool,
    },
    /// Whether a payment link you made is paid (found by its reference,
    /// checked against its finality proof).
    Paid {
        /// The chatpay: link `request` printed.
        link: String,
        /// Wait up to this many seconds for the payment.
        #[arg(long)]
        wait: Option<u64>,
    },
    /// Recent transactions of the account.
    History {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only entries numbered below this (the `#` column): the page
        /// after one that ended at #N is `--before N`.
        #[arg(long)]
        before: Option<u64>,
        /// Every entry (pages read and verified one after another).
        #[arg(long, conflicts_with = "limit")]
        all: bool,
    },
    /// Follow incoming payments (resumes where the last watch stopped).
    Watch {
        /// Stop after this many payments.
        #[arg(long)]
        count: Option<usize>,
    },
    /// The chain, its height, and which validators answer.
    Status,
    /// Transfers signed and not yet seen final (a payment whose wait
    /// timed out stays pending).
    Pending,
    /// Submit the pending transfers again, unchanged, and wait until each
    /// is final.
    Retry,
    /// Cancel the oldest pending transfer: a transfer to yourself with its
    /// nonce and a fee one minimum fee higher, which validators take in
    /// its place; waits until one of the two is final.
    Cancel,
    /// Pin the chain the validators are on now, after its network was
    /// started over (a devnet reset): shows the pinned and the new chain;
    /// with --yes, drops what belonged to the old one (pending transfers,
    /// incoming cursors) and pins the new one. Keys and accounts stay.
    Repin {
        /// Do it (without: only show the two chains).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum AccountsAction {
    /// A new account from the recovery phrase.
    New {
        /// Its name.
        name: String,
    },
    /// Remove an account: its key file and state. An imported key is
    /// gone for good; a derived one can be derived again from the phrase.
    Remove {
        /// Its name.
        name: String,
        /// Do it (without: only say what would go).
        #[arg(long)]
        yes: bool,
    },
    /// Import a raw secret key (hex), e.g. a devnet faucet key file.
    Import {
        /// Its name.
        name: String,
        /// File holding the key in hex (else asked, or CHATPAY_IMPORT_KEY).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
}

struct Ctx {
    home: PathBuf,
    nodes: Vec<String>,
    account: String,
    json: bool,
}

type Out = Result<(), WalletError>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let home = cli.home.clone().unwrap_or_else(|| {
        dirs::config_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("chatpay")
    });
    let ctx = Ctx {
        home,
        nodes: cli.nodes,
        account: cli.account,
        json: cli.json,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match runtime.block_on(run(&ctx, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if ctx.json {
                println!("{}", json!({ "error": e.to_string() }));
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(ctx: &Ctx, command: Command) -> Out {
    match command {
        Command::Init => init(ctx),
        Command::Restore => restore(ctx),
        Command::Accounts { action } => accounts(ctx, action),
        Command::Address => address(ctx).await,
        Command::Balance => balance(ctx).await,
        Command::Send {
            to,
            amount,
            memo,
            public_memo,
            fee,
        } => {
            let details = memo_details(memo, public_memo);
            send(ctx, &to, &amount, details, fee.as_deref()).await
        }
        Command::Split {
            amount,
            to,
            memo,
            public_memo,
        } => split(ctx, &amount, &to, memo_details(memo, public_memo)).await,
        Command::Request {
            amount,
            memo,
            label,
            expires,
            qr,
        } => request(ctx, amount.as_deref(), memo, label, &expires, qr).await,
        Command::Pay {
            link,
            amount,
            public_memo,
        } => pay(ctx, &link, amount.as_deref(), public_memo).await,
        Command::Paid { link, wait } => paid(ctx, &link, wait).await,
        Command::History { limit, before, all } => {
            history(ctx, (!all).then_some(limit), before).await
        }
        Command::Watch { count } => watch(ctx, count).await,
        Command::Status => status(ctx).await,
        Command::Repin { yes } => repin(ctx, yes).await,
        Command::Pending => pending(ctx).await,
        Command::Retry => retry(ctx).await,
        Command::Cancel => cancel(ctx).await,
    }
}

fn print(ctx: &Ctx, value: serde_json::Value, human: &str) {
    if ctx.json {
        println!("{value}");
    } else {
        println!("{human}");
    }
}

/// A password from CHATPAY_PASSWORD or the terminal (twice when `confirm`).
fn password(prompt: &str, confirm: bool) -> Result<String, WalletError> {
    if let Ok(p) = std::env::var("CHATPAY_PASSWORD") {
        return Ok(p);
    }
    let io = |e| WalletError::io("terminal".as_ref(), e);
    let first = rpassword::prompt_password(prompt).map_err(io)?;
    if confirm {
        let again = rpassword::prompt_password("Repeat it: ").map_err(io)?;
        if again != first {
            return Err(WalletError::Invalid(
                "the two passwords differ; nothing was changed".into(),
            ));
        }
    }
    if first.is_empty() {
        return Err(WalletError::Invalid(
            "an empty password protects nothing; choose one".into(),
        ));
    }
    Ok(first)
}

fn kdf() -> KdfParams {
    KdfParams::default()
}

fn init(ctx: &Ctx) -> Out {
    let pw = password("New wallet password: ", true)?;
    let (home, phrase) = WalletHome::create(&ctx.home, &pw, kdf())?;
    let key = home
        .account(chatpay_wallet::home::DEFAULT_ACCOUNT)?
        .public_key;
    print(
        ctx,
        json!({ "home": ctx.home, "phrase": phrase.words(), "public_key": key }),
        &format!(
            "Created a wallet in {}.\n\nRecovery phrase (write it down; it is shown only this once):\n\n  {}\n\nAnyone with these words can spend your money.",
            ctx.home.display(),
            phrase.words()
        ),
    );
    Ok(())
}

fn restore(ctx: &Ctx) -> Out {
    let words = match std::env::var("CHATPAY_PHRASE") {
        Ok(w) => w,
        Err(_) => {
            eprint!("Recovery phrase: ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| WalletError::io("stdin".as_ref(), e))?;
            line
        }
    };
    let phrase = RecoveryPhrase::parse(&words)?;
    let pw = password("New wallet password: ", true)?;
    let home = WalletHome::restore(&ctx.home, &phrase, &pw, kdf())?;
    let key = home
        .account(chatpay_wallet::home::DEFAULT_ACCOUNT)?
        .public_key;
    print(
        ctx,
        json!({ "home": ctx.home, "public_key": key }),
        &format!("Restored the wallet in {}.", ctx.home.display()),
    );
    Ok(())
}

fn accounts(ctx: &Ctx, action: Option<AccountsAction>) -> Out {
    let home = WalletHome::open(&ctx.home)?;
    match action {
        None => {
            let list = home.accounts()?;
            let chain = home.chain()?;
            let rows: Vec<serde_json::Value> = list
                .iter()
                .map(|a| {
                    let address = chain.as_ref().and_then(|c| a.key().ok().map(|k| c.address(&k).to_string()));
                    json!({ "name": a.name, "public_key": a.public_key, "address": address, "source": a.source })
                })
                .collect();
            let human = list
                .iter()
                .zip(&rows)
                .map(|(a, r)| {
                    let shown = r["address"]
                        .as_str()
                        .map_or(a.public_key.clone(), str::to_string);
                    format!("{:<12} {shown}", a.name)
                })
                .collect::<Vec<_>>()
                .join("\n");
            print(ctx, json!({ "accounts": rows }), &human);
        }
        Some(AccountsAction::New { name }) => {
            let pw = password("Wallet password: ", false)?;
            let a = home.new_account(&name, &pw)?;
            print(
                ctx,
                json!({ "name": a.name, "public_key": a.public_key }),
                &format!("Added account {name}."),
            );
        }
        Some(AccountsAction::Remove { name, yes }) => {
            let account = home.account(&name)?;
            let lost = match account.source {
                AccountSource::Imported => "its imported key is gone for good",
                AccountSource::Derived(_) => "it can be derived again from the recovery phrase",
            };
            if !yes {
                return Err(WalletError::Invalid(format!(
                    "removing account {name:?} deletes its key file ({lost}); run again with --yes"
                )));
            }
            home.remove_account(&name)?;
            print(
                ctx,
                json!({ "removed": name }),
                &format!("Removed account {name} ({lost})."),
            );
        }
        Some(AccountsAction::Import { name, key_file }) => {
            let text = match key_file {
                Some(path) => {
                    std::fs::read_to_string(&path).map_err(|e| WalletError::io(&path, e))?
                }
                None => match std::env::var("CHATPAY_IMPORT_KEY") {
                    Ok(k) => k,
                    Err(_) => rpassword::prompt_password("Secret key (hex): ")
                        .map_err(|e| WalletError::io("terminal".as_ref(), e))?,
                },
            };
            let key = hex::decode(text.trim())
                .ok()
                .and_then(|b| chatpay_proto::SecretKey::from_slice(&b).ok())
                .ok_or_else(|| {
                    WalletError::Invalid(
                        "invalid key: it must be 32 bytes of hex (64 characters)".into(),
                    )
                })?;
            let pw = password("Wallet password: ", false)?;
            let a = home.import_key(&name, &key, &pw)?;
            print(
                ctx,
                json!({ "name": a.name, "public_key": a.public_key }),
                &format!("Imported account {name}."),
            );
        }
    }
    Ok(())
}

async fn connect(ctx: &Ctx) -> Result<Arc<Wallet>, WalletError> {
    let home = WalletHome::open(&ctx.home)?;
    Ok(Arc::new(Wallet::connect(home, &ctx.nodes).await?))
}

async fn address(ctx: &Ctx) -> Out {
    let home = WalletHome::open(&ctx.home)?;
    let entry = home.account(&ctx.account)?;
    let chain = match home.chain()? {
        Some(c) => c,
        None => connect(ctx).await?.chain().clone(),
    };
    let address = chain.address(&entry.key()?);
    print(
        ctx,
        json!({ "account": ctx.account, "address": address.to_string() }),
        &address.to_string(),
    );
    Ok(())
}

async fn balance(ctx: &Ctx) -> Out {
    let w = connect(ctx).await?;
    let address = w.address(&ctx.account)?;
    let a = w.account(&address).await?;
    print(
        ctx,
        json!({ "address": address.to_string(), "balance": a.balance, "balance_display": w.chain().format(a.balance), "nonce": a.nonce, "height": a.height, "verified_height": a.height }),
        &format!(
            "{} (verified at height {})",
            w.chain().format(a.balance),
            a.height
        ),
    );
    Ok(())
}

fn signer(ctx: &Ctx, w: &Wallet) -> Result<Signer, WalletError> {
    w.home().account(&ctx.account)?;
    let pw = password(&format!("Password for {}: ", ctx.account), false)?;
    w.signer(&ctx.account, &pw)
}

/// A spinner on the terminal while `work` runs (none with --json or when
/// stderr is not a terminal).
async fn with_spinner<T>(
    ctx: &Ctx,
    message: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    if ctx.json || !std::io::stderr().is_terminal() {
        return work.await;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    let out = work.await;
    bar.finish_and_clear();
    out
}

fn memo_details(memo: String, public_memo: bool) -> PaymentDetails {
    PaymentDetails {
        memo,
        public_memo,
        ..PaymentDetails::default()
    }
}

async fn pay_and_report(
    ctx: &Ctx,
    w: &Wallet,
    from: &Signer,
    to: &[(chatpay_proto::Address, u64)],
    details: &PaymentDetails,
) -> Out {
    let p = with_spinner(ctx, "waiting for finality…", w.pay_with(from, to, details)).await?;
    report_payment(ctx, w, &p, to.len())
}

fn report_payment(ctx: &Ctx, w: &Wallet, p: &Payment, recipients: usize) -> Out {
    let outcome = if p.is_success() { "paid" } else { "failed" };
    print(
        ctx,
        json!({
            "tx_id": p.tx_id.to_string(), "height": p.height, "success": p.is_success(),
            "receipt": format!("{:?}", p.receipt), "amount": p.amount, "fee": p.fee,
        }),
        &format!(
            "{outcome}: {} to {} recipient(s), fee {}, final in block {} (tx {})",
            w.chain().format(p.amount),
            recipients,
            w.chain().format(p.fee),
            p.height,
            p.tx_id
        ),
    );
    if p.is_success() {
        Ok(())
    } else {
        Err(WalletError::Refused {
            reason: format!("{:?}", p.receipt),
            message: "the transfer was included but took no effect".into(),
        })
    }
}

async fn send(
    ctx: &Ctx,
    to: &str,
    amount: &str,
    mut details: PaymentDetails,
    fee: Option<&str>,
) -> Out {
    let w = connect(ctx).await?;
    let to = w.chain().parse_address(to)?;
    let amount = w.chain().parse_amount(amount)?;
    details.fee = fee.map(|f| w.chain().parse_amount(f)).transpose()?;
    let from = signer(ctx, &w)?;
    pay_and_report(ctx, &w, &from, &[(to, amount)], &details).await
}

async fn split(ctx: &Ctx, amount: &str, to: &[String], details: PaymentDetails) -> Out {
    let w = connect(ctx).await?;
    let total = w.chain().parse_amount(amount)?;
    let recipients = to
        .iter()
        .map(|a| w.chain().parse_address(a))
        .collect::<Result<Vec<_>, _>>()?;
    let n = recipients.len() as u64;
    let share = total / n;
    if share == 0 {
        return Err(WalletError::BadAmount {
            input: amount.into(),
            reason: format!("too small to split {n} ways"),
        });
    }
    // The first recipient gets the indivisible remainder.
    let outputs: Vec<_> = recipients
        .into_iter()
        .enumerate()
        .map(|(i, a)| (a, if i == 0 { share + total % n } else { share }))
        .collect();
    let from = signer(ctx, &w)?;
    pay_and_report(ctx, &w, &from, &outputs, &details).await
}

/// Seconds in a duration written `90s`, `30m`, `24h` or `7d` (or plain
/// seconds).
fn parse_duration(text: &str) -> Result<u64, WalletError> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 && scale > 0 => n
            .checked_mul(scale)
            .ok_or_else(|| WalletError::Invalid(format!("--expires {text:?} is too far ahead"))),
        _ => Err(WalletError::Invalid(format!(
            "--expires must be a positive duration like 90s, 30m, 24h or 7d, got {text:?}"
        ))),
    }
}

async fn request(
    ctx: &Ctx,
    amount: Option<&str>,
    memo: Option<String>,
    label: Option<String>,
    expires: &str,
    qr: bool,
) -> Out {
    let ttl = parse_duration(expires)?;
    let home = WalletHome::open(&ctx.home)?;
    let chain = match home.chain()? {
        Some(c) => c,
        None => connect(ctx).await?.chain().clone(),
    };
    let address = chain.address(&home.account(&ctx.account)?.key()?);
    let request = PaymentRequest {
        amount: amount.map(|a| chain.parse_amount(a)).transpose()?,
        memo,
        label,
        ..PaymentRequest::new(address, &chain, ttl)
    };
    let link = request.to_link(&chain);
    // What this writes, `pay` reads: a memo too long for a transfer would
    // make a link nobody can pay.
    PaymentRequest::parse(&link, &chain).map_err(|e| match e {
        WalletError::BadRequest(why) => {
            WalletError::Invalid(format!("cannot make the link: {why}"))
        }
        other => other,
    })?;
    if request
        .memo
        .as_ref()
        .is_some_and(|m| m.len() > chatpay_proto::MAX_ENCRYPTED_MEMO_TEXT)
    {
        return Err(WalletError::Invalid(format!(
            "cannot make the link: the memo is {} bytes, an encrypted memo carries at most {}",
            request.memo.as_ref().map_or(0, String::len),
            chatpay_proto::MAX_ENCRYPTED_MEMO_TEXT
        )));
    }
    let mut human = link.clone();
    if qr {
        let code = qrcode::QrCode::new(link.as_bytes())
            .map_err(|e| WalletError::Invalid(format!("cannot draw the QR code: {e}")))?;
        let art = code
            .render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build();
        human = format!("{art}\n{link}");
    }
    let reference = request.reference.map(|r| r.to_hex());
    print(
        ctx,
        json!({ "link": link, "reference": reference, "expires_at": request.expires_at }),
        &human,
    );
    Ok(())
}

async fn pay(ctx: &Ctx, link: &str, amount: Option<&str>, public_memo: bool) -> Out {
    let w = connect(ctx).await?;
    let request = PaymentRequest::parse(link, w.chain())?;
    let mut chosen = amount.map(|a| w.chain().parse_amount(a)).transpose()?;
    if let (Some(asked), Some(a)) = (request.amount, chosen) {
        if asked != a {
            return Err(WalletError::Invalid(format!(
                "the link asks for {}; pay it as it is (without --amount)",
                w.chain().format(asked)
            )));
        }
        chosen = None;
    }
    let Some(amount) = request.amount.or(chosen) else {
        return Err(WalletError::Invalid(
            "the link has no amount; add --amount".into(),
        ));
    };
    request.check_not_expired(chatpay_wallet::unix_now_secs())?;
    if let Some(label) = &request.label {
        if !ctx.json {
            eprintln!("Paying {label} {}", w.chain().format(amount));
        }
    }
    let from = signer(ctx, &w)?;
    let p = with_spinner(
        ctx,
        "waiting for finality…",
        w.pay_request(&from, &request, chosen, public_memo),
    )
    .await?;
    report_payment(ctx, &w, &p, 1)
}

async fn paid(ctx: &Ctx, link: &str, wait: Option<u64>) -> Out {
    let w = connect(ctx).await?;
    let request = PaymentRequest::parse(link, w.chain())?;
    if request.reference.is_none() {
        return Err(WalletError::Invalid(
            "the link has no reference (ref=): make links with `chatpay request`".into(),
        ));
    }
    // The requester reads the memo its payer encrypted for it.
    if let Ok(me) = w.address(&ctx.account) {
        if me == request.address {
            unlock_memos(ctx, &w)?;
        }
    }
    let found = match wait {
        Some(secs) => {
            let waiting = w.wait_request_paid(&request, Duration::from_secs(secs));
            match with_spinner(ctx, "waiting for the payment…", waiting).await {
                Ok(p) => Some(p),
                Err(WalletError::Invalid(why)) if why.contains("not paid after") => None,
                Err(e) => return Err(e),
            }
        }
        None => w.find_request_payment(&request).await?,
    };
    match found {
        Some(p) => print(
            ctx,
            json!({
                "paid": true, "tx_id": p.payment.tx_id.to_string(), "height": p.payment.height,
                "from": p.from.to_string(), "amount": p.amount, "memo": p.memo,
                "memo_encrypted": p.memo_encrypted,
            }),
            &format!(
                "paid: {} from {} in block {} (tx {}){}",
                w.chain().format(p.amount),
                p.from,
                p.payment.height,
                p.payment.tx_id,
                if p.memo.is_empty() {
                    String::new()
                } else {
                    format!("  \"{}\"", p.memo.escape_debug())
                }
            ),
        ),
        None => print(ctx, json!({ "paid": false }), "not paid yet"),
    }
    Ok(())
}

/// Lets the wallet open the account's encrypted memos: asks for its
/// password when one can be had (CHATPAY_PASSWORD, or a terminal);
/// otherwise memos show as `(encrypted memo)`.
fn unlock_memos(ctx: &Ctx, w: &Wallet) -> Out {
    let local = w.home().account(&ctx.account).is_ok();
    let can_ask = std::env::var("CHATPAY_PASSWORD").is_ok() || std::io::stdin().is_terminal();
    if local && can_ask {
        w.read_memos_of(&signer(ctx, w)?);
    }
    Ok(())
}

async fn history(ctx: &Ctx, limit: Option<u32>, before: Option<u64>) -> Out {
    let w = connect(ctx).await?;
    let address = w.address(&ctx.account)?;
    unlock_memos(ctx, &w)?;
    let history = w.history_before(&address, before, limit).await?;
    let entries = &history.entries;
    let rows: Vec<_> = entries
        .iter()
        .map(|e| {
            json!({
                "tx_id": e.tx_id.to_string(), "height": e.cursor.height, "index": e.cursor.index,
                "from": e.from.to_string(),
                "to": e.to.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "amount": e.amount, "outgoing": e.outgoing,
                "memo": e.memo, "memo_encrypted": e.memo_encrypted, "receipt": format!("{:?}", e.receipt), "number": e.number,
            })
        })
        .collect();
    let human = entries
        .iter()
        .map(|e| {
            let sign = if e.outgoing { "-" } else { "+" };
            let with = if e.outgoing {
                let to: Vec<String> = e.to.iter().map(ToString::to_string).collect();
                match to.is_empty() {
                    true => "to yourself".to_string(),
                    false => format!("to {}", to.join(", ")),
                }
            } else {
                format!("from {}", e.from)
            };
            let memo = if e.memo.is_empty() {
                String::new()
            } else {
                // The payer chose it: shown escaped, so it cannot draw
                // lines of its own.
                format!("  \"{}\"", e.memo.escape_debug())
            };
            format!(
                "#{:<5} {:>8}  {sign}{:<16} {with}{memo}",
                e.number,
                e.cursor.height,
                w.chain().format(e.amount),
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    // Where the next older page starts, when there is one.
    let next_before = entries.last().filter(|e| e.number > 1).map(|e| e.number);
    let older = next_before.map(|n| format!("; older: --before {n}"));
    let human = if human.is_empty() {
        match before {
            Some(n) if history.total > 0 => format!(
                "no entries before #{n} ({} in all, verified at height {})",
                history.total, history.height
            ),
            _ => format!(
                "no transactions yet (verified at height {})",
                history.height
            ),
        }
    } else {
        format!(
            "{human}\n{} of {} transactions, verified at height {}{}",
            entries.len(),
            history.total,
            history.height,
            older.unwrap_or_default()
        )
    };
    print(
        ctx,
        json!({
            "transactions": rows, "verified_height": history.height, "total": history.total,
            "next_before": next_before,
        }),
        &human,
    );
    Ok(())
}

async fn watch(ctx: &Ctx, count: Option<usize>) -> Out {
    let w = connect(ctx).await?;
    let address = w.address(&ctx.account)?;
    unlock_memos(ctx, &w)?;
    let after = w.home().state(&ctx.account)?.incoming;
    if !ctx.json {
        eprintln!("Watching {address} for payments (Ctrl-C stops)…");
    }
    let mut stream = w.incoming(&address, after);
    let mut seen = 0usize;
    while let Some(item) = stream.next().await {
        let p = match item {
            Ok(p) => p,
            // A validator caught lying is named; the stream goes on with
            // the others.
            Err(e @ WalletError::Lied { .. }) => {
                eprintln!("warning: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        print(
            ctx,
            json!({ "tx_id": p.tx_id.to_string(), "from": p.from.to_string(), "amount": p.amount, "memo": p.memo, "memo_encrypted": p.memo_encrypted, "height": p.cursor.height, "index": p.cursor.index }),
            &format!(
                "received {} from {} {}(block {})",
                w.chain().format(p.amount),
                p.from,
                if p.memo.is_empty() {
                    String::new()
                } else {
                    format!("\"{}\" ", p.memo.escape_debug())
                },
                p.cursor.height
            ),
        );
        // Remember it, so the next watch resumes after it.
        let mut state = w.home().state(&ctx.account)?;
        state.incoming = Some(p.cursor);
        w.home().save_state(&ctx.account, &state)?;
        seen += 1;
        if count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(())
}

async fn pending(ctx: &Ctx) -> Out {
    let w = connect(ctx).await?;
    let txs = w.pending(&ctx.account)?;
    let rows: Vec<serde_json::Value> = txs
        .iter()
        .map(|tx| {
            let t = tx.transfer();
            json!({
                "tx_id": tx.tx_id().to_string(), "nonce": t.nonce(), "fee": t.fee(),
                "to": t.outputs().iter().map(|o| w.chain().address(&o.recipient).to_string()).collect::<Vec<_>>(),
                "amount": t.outputs().iter().map(|o| o.amount).sum::<u64>(),
            })
        })
        .collect();
    let human = if txs.is_empty() {
        "nothing pending".to_string()
    } else {
        let lines: Vec<String> = txs
            .iter()
            .map(|tx| {
                let t = tx.transfer();
                let to: Vec<String> = t
                    .outputs()
                    .iter()
                    .map(|o| w.chain().address(&o.recipient).to_string())
                    .collect();
                let amount = t.outputs().iter().map(|o| o.amount).sum::<u64>();
                format!(
                    "nonce {:<6} {} to {}  ({})",
                    t.nonce(),
                    w.chain().format(amount),
                    to.join(", "),
                    tx.tx_id()
                )
            })
            .collect();
        format!(
            "{}\n{} pending: `chatpay retry` submits them again and waits until final",
            lines.join("\n"),
            txs.len()
        )
    };
    print(ctx, json!({ "pending": rows }), &human);
    Ok(())
}

async fn cancel(ctx: &Ctx) -> Out {
    let w = connect(ctx).await?;
    let from = signer(ctx, &w)?;
    let pending = w.pending(&ctx.account)?;
    let original = pending.first().map(|tx| tx.tx_id());
    let p = w.cancel(&from).await?;
    let cancelled = Some(p.tx_id) != original;
    let human = if cancelled {
        format!("cancelled: the cancel is final at height {}", p.height)
    } else {
        format!(
            "too late: the transfer was final first, at height {} ({})",
            p.height, p.tx_id
        )
    };
    print(
        ctx,
        json!({ "cancelled": cancelled, "tx_id": p.tx_id.to_string(), "height": p.height }),
        &human,
    );
    Ok(())
}

async fn retry(ctx: &Ctx) -> Out {
    let w = connect(ctx).await?;
    let from = signer(ctx, &w)?;
    let done = w.retry(&from).await?;
    let rows: Vec<serde_json::Value> = done
        .iter()
        .map(|p| json!({ "tx_id": p.tx_id.to_string(), "height": p.height, "success": p.is_success() }))
        .collect();
    let human = if done.is_empty() {
        "nothing pending".to_string()
    } else {
        done.iter()
            .map(|p| {
                format!(
                    "final at height {}: {} ({:?})",
                    p.height, p.tx_id, p.receipt
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    print(ctx, json!({ "final": rows }), &human);
    Ok(())
}

async fn repin(ctx: &Ctx, yes: bool) -> Out {
    let home = WalletHome::open(&ctx.home)?;
    let new = chatpay_wallet::network_chain(&ctx.nodes).await?;
    let show = |c: &ChainInfo| format!("{} (genesis {})", c.chain_id, c.genesis_hash);
    let old = home.chain()?;
    if old.as_ref() == Some(&new) {
        print(
            ctx,
            json!({ "pinned": new.genesis_hash, "changed": false }),
            &format!("Already pinned to {}.", show(&new)),
        );
        return Ok(());
    }
    let was = old.as_ref().map_or("nothing".to_string(), show);
    if !yes {
        return Err(WalletError::Invalid(format!(
            "the wallet is pinned to {was}; the validators are on {}. Run again with --yes \
             to pin it: pending transfers of the old chain are dropped (never sent to the \
             new one), keys and accounts stay",
            show(&new)
        )));
    }
    home.repin_chain(&new)?;
    print(
        ctx,
        json!({ "pinned": new.genesis_hash, "was": old.map(|c| c.genesis_hash), "changed": true }),
        &format!(
            "Pinned {} (was {was}); pending transfers of the old chain dropped.",
            show(&new)
        ),
    );
    Ok(())
}

async fn status(ctx: &Ctx) -> Out {
    let home = WalletHome::open(&ctx.home).ok();
    let client = chatpay_wallet::NodeClient::new(&ctx.nodes)?;
    let statuses = client.statuses().await;
    let reachable = statuses.iter().filter(|s| s.status.is_ok()).count();
    let mut rows = Vec::new();
    let mut lines = Vec::new();
    for s in &statuses {
        match &s.status {
            Ok(st) => {
                rows.push(json!({ "url": s.url, "chain_id": st.chain_id, "height": st.committed_height, "validators": st.validators.len() }));
                lines.push(format!(
                    "{:<28} up    chain {} height {} ({} validators)",
                    s.url,
                    st.chain_id,
                    st.committed_height,
                    st.validators.len()
                ));
            }
            Err(e) => {
                rows.push(json!({ "url": s.url, "error": e }));
                lines.push(format!("{:<28} DOWN  {e}", s.url));
            }
        }
    }
    let pinned = home
        .and_then(|h| h.chain().ok().flatten())
        .map(|c| c.chain_id);
    print(
        ctx,
        json!({ "nodes": rows, "reachable": reachable, "wallet_chain": pinned }),
        &format!(
            "{}\n{reachable} of {} reachable",
            lines.join("\n"),
            statuses.len()
        ),
    );
    if reachable == 0 {
        return Err(WalletError::Unreachable {
            tried: client.urls(),
            last: statuses
                .last()
                .and_then(|s| s.status.clone().err())
                .unwrap_or_default(),
        });
    }
    Ok(())
}
