//! A chat thread between Alice and Bob, with payments in it.
//!
//! Bob posts a payment link in the thread; Alice's app shows it as a "Pay"
//! button, she pays it, and both apps post the confirmed payment, each after
//! checking the validators' certificate itself.
//!
//! ```sh
//! cargo run -p chatpay-wallet --example chat
//! ```
//! It starts its own 4-validator network in this process (on 127.0.0.1),
//! so it needs nothing else running.

use chatpay_tests::LocalNetwork;
use chatpay_wallet::{KdfParams, PaymentRequest, Wallet, WalletError, WalletHome};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

/// What a chat app shows in the thread.
fn post(who: &str, text: &str) {
    println!("[thread] {who:>6}: {text}");
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
    let alice_home = open("alice")?;
    alice_home.import_key("faucet", &net.faucet, "pw")?;
    let alice = Arc::new(Wallet::connect(alice_home, &net.urls()).await?);
    let bob = Arc::new(Wallet::connect(open("bob")?, &net.urls()).await?);
    let alice_me = alice.signer("default", "pw")?;
    let bob_me = bob.signer("default", "pw")?;
    // Alice gets some money to play with.
    let faucet = alice.signer("faucet", "pw")?;
    alice
        .pay(&faucet, &alice_me.address, 100_000_000, "top-up")
        .await?;

    // Bob's app opens the memos sent to him (encrypted for him and the
    // payer), follows incoming payments and posts them in the thread.
    bob.read_memos_of(&bob_me);
    let (posted, mut confirmations) = mpsc::channel(4);
    let mut incoming = bob.incoming(&bob_me.address, None);
    tokio::spawn(async move {
        while let Some(Ok(p)) = incoming.next().await {
            let _ = posted.send(p).await;
        }
    });

    // Bob asks for his share of the pizza.
    let request = PaymentRequest {
        amount: Some(bob.chain().parse_amount("12.50")?),
        memo: Some("pizza".into()),
        label: Some("Bob".into()),
        ..PaymentRequest::new(bob_me.address.clone(), bob.chain(), 3_600)
    };
    post("Bob", "Pizza was 25, you owe me half 🍕");
    post("Bob", &request.to_link(bob.chain()));

    // Alice's app recognises the link in the message and offers to pay it.
    let link = PaymentRequest::parse(&request.to_link(bob.chain()), alice.chain())?;
    let amount = alice.chain().format(link.amount.unwrap_or(0));
    post(
        "app",
        &format!("[Pay {amount} to {}]", link.label.as_deref().unwrap_or("?")),
    );
    let paid = alice.pay_request(&alice_me, &link, None, false).await?;
    post(
        "Alice",
        &format!(
            "Paid {amount} ✔ final in block {} (tx {})",
            paid.height, paid.tx_id
        ),
    );

    // Bob's app confirms, from its own verification.
    if let Some(p) = confirmations.recv().await {
        post(
            "Bob",
            &format!(
                "Got {} from {} for \"{}\" ✔ (block {})",
                bob.chain().format(p.amount),
                if p.from == alice_me.address {
                    "Alice"
                } else {
                    "someone"
                },
                p.memo,
                p.cursor.height
            ),
        );
    }
    net.shutdown().await;
    Ok(())
}
