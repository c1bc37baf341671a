//! Hostile input against full validators on 127.0.0.1: each class is
//! answered with a precise error (or dropped, on the validator port) while
//! the validator keeps serving, and nothing invalid is accepted.

use chatpay_node::mempool::MempoolConfig;
use chatpay_proto::pb::client_client::ClientClient;
use chatpay_proto::{Hash, Output, SecretKey, Signature, SignedTransfer, Transfer, pb};
use chatpay_tests::{FEE, LocalNetwork, validator_key};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(30);

/// Sends and receives raw bytes as gRPC messages (to send truncated or
/// garbage protobuf).
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let v = src.chunk().to_vec();
        src.advance(v.len());
        Ok(Some(v))
    }
}

async fn raw_call(url: &str, path: &'static str, body: Vec<u8>) -> tonic::Status {
    let channel = Channel::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(body),
        PathAndQuery::from_static(path),
        Raw,
    )
    .await
    .unwrap_err()
}

fn transfer(
    network: Hash,
    key: &SecretKey,
    nonce: u64,
    fee: u64,
    outputs: Vec<Output>,
    memo: Vec<u8>,
) -> pb::SignedTransaction {
    // Built on the wire directly: some of these the domain types refuse.
    let t = pay(network, key, nonce, key, 1);
    let mut wire = pb::SignedTransaction::from(&t);
    let tr = wire.transfer.as_mut().unwrap();
    tr.fee = fee;
    tr.outputs = outputs
        .iter()
        .map(|o| pb::Output {
            recipient: o.recipient.as_bytes().to_vec(),
            amount: o.amount,
        })
        .collect();
    tr.memo = memo;
    wire
}

async fn submit(
    c: &mut ClientClient<Channel>,
    wire: pb::SignedTransaction,
) -> Result<(), tonic::Status> {
    c.submit_transaction(pb::SubmitTransactionRequest {
        transaction: Some(wire),
    })
    .await
    .map(|_| ())
}

async fn still_serving(net: &LocalNetwork) {
    let mut c = ClientClient::connect(net.urls()[0].clone()).await.unwrap();
    c.get_status(pb::GetStatusRequest {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_class_of_bad_input_gets_a_precise_answer() {
    let net = LocalNetwork::start(4).await;
    net.wait_for(&[0, 1, 2, 3], 2, WAIT).await;
    let url = net.urls()[0].clone();
    let mut c = ClientClient::connect(url.clone()).await.unwrap();
    let faucet = net.faucet.clone();
    let bob = SecretKey::generate();
    let out = |amount| Output {
        recipient: bob.public_key().clone(),
        amount,
    };

    // Garbage bytes and half-open connections on the port.
    let addr = url.trim_start_matches("http://").to_string();
    let mut garbage = tokio::net::TcpStream::connect(&addr).await.unwrap();
    garbage.write_all(&[0xde; 4096]).await.unwrap();
    let mut idle = Vec::new();
    for _ in 0..64 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap(); // half a preface
        idle.push(s);
    }
    still_serving(&net).await;

    // Truncated and garbage protobuf.
    let t = Transfer::new(
        net.genesis.hash(),
        faucet.public_key().clone(),
        1,
        FEE,
        vec![out(5)],
        vec![],
    )
    .unwrap()
    .sign(&faucet);
    let valid = {
        use prost::Message;
        pb::SubmitTransactionRequest {
            transaction: Some((&t).into()),
        }
        .encode_to_vec()
    };
    let path = "/chatpay.v1.Client/SubmitTransaction";
    // gRPC's own decoder answers these, as docs/ledger.md says: INTERNAL.
    let s = raw_call(&url, path, valid[..valid.len() / 2].to_vec()).await;
    assert_eq!(s.code(), Code::Internal, "{s:?}");
    assert!(s.message().contains("decode"), "{s:?}");
    let s = raw_call(&url, path, vec![0xff; 300]).await;
    assert_eq!(s.code(), Code::Internal, "{s:?}");

    // A layout 1 transfer (no version, signed for a chain id only) and an
    // unknown layout are refused naming the field, with what to do.
    for (version, says) in [(0, "no longer accepted"), (3, "unknown")] {
        let mut wire = pb::SignedTransaction::from(&t);
        wire.transfer.as_mut().unwrap().version = version;
        let s = submit(&mut c, wire).await.unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(
            s.message().contains("transfer.version") && s.message().contains(says),
            "{s:?}"
        );
    }
    // An expired transfer is refused with its reason.
    let expired = t.transfer().clone().with_expiry(1).sign(&faucet);
    let s = submit(&mut c, (&expired).into()).await.unwrap_err();
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert_eq!(s.metadata().get("chatpay-reason").unwrap(), "expired");
    let s = raw_call(&url, "/chatpay.v1.Client/NoSuchCall", vec![]).await;
    assert_eq!(s.code(), Code::Unimplemented);

    // A high-S signature (the same signature, s replaced by n - s).
    let mut wire = pb::SignedTransaction::from(&t);
    wire.signature = high_s(t.signature());
    let s = submit(&mut c, wire).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains("high S"), "{s:?}");

    // Overflowing amounts and fee; too many outputs; oversize memo.
    let s = submit(
        &mut c,
        transfer(
            net.genesis.hash(),
            &faucet,
            1,
            FEE,
            vec![out(u64::MAX), out(2)],
            vec![],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    let s = submit(
        &mut c,
        transfer(
            net.genesis.hash(),
            &faucet,
            1,
            u64::MAX,
            vec![out(1)],
            vec![],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    let many: Vec<Output> = (0..65).map(|_| out(1)).collect();
    let s = submit(
        &mut c,
        transfer(net.genesis.hash(), &faucet, 1, FEE, many, vec![]),
    )
    .await
    .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("outputs"), "{s:?}");
    let s = submit(
        &mut c,
        transfer(
            net.genesis.hash(),
            &faucet,
            1,
            FEE,
            vec![out(1)],
            vec![b'm'; 257],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("memo"), "{s:?}");
    // None of those were signed validly; nothing moved.
    assert_eq!(net.nonce(0, faucet.public_key()), 0);

    // A self-transfer is allowed (docs/ledger.md): only the fee leaves.
    let before = net
        .store(0)
        .account(faucet.public_key())
        .unwrap()
        .unwrap()
        .balance;
    let me = Transfer::new(
        net.genesis.hash(),
        faucet.public_key().clone(),
        1,
        FEE,
        vec![Output {
            recipient: faucet.public_key().clone(),
            amount: 7,
        }],
        vec![],
    )
    .unwrap()
    .sign(&faucet);
    submit(&mut c, (&me).into()).await.unwrap();
    net.wait_for_nonce(faucet.public_key(), 1, WAIT).await;
    let after = net
        .store(0)
        .account(faucet.public_key())
        .unwrap()
        .unwrap()
        .balance;
    assert_eq!(before - after, FEE);

    // The validator port: a validator's real vote, replayed, and the same
    // vote claimed by another index, are dropped without harm.
    let mut peer = pb::validator_client::ValidatorClient::connect(url.clone())
        .await
        .unwrap();
    let h = net.height(0);
    let block = net.store(0).block(h).unwrap().unwrap();
    let chain = chatpay_proto::ChainBinding::genesis(block.header.genesis_hash);
    let digest = chatpay_proto::sha256(&chatpay_proto::vote_signing_bytes(
        &chain,
        &block.header.hash(),
        block.header.round,
        h,
    ));
    let vote = |sender| pb::ConsensusMessage {
        message: Some(pb::consensus_message::Message::Vote(pb::Vote {
            block_hash: block.header.hash().0.to_vec(),
            round: block.header.round,
            height: h,
            sender,
            signature: validator_key(1).sign_digest(&digest).as_bytes().to_vec(),
        })),
    };
    for _ in 0..3 {
        peer.deliver(vote(1)).await.unwrap();
        peer.deliver(vote(2)).await.unwrap();
    }
    let h = net.height(0);
    net.wait_for(&[0, 1, 2, 3], h + 2, WAIT).await;
    net.assert_agreement();
    drop(idle);
    drop(garbage);
    still_serving(&net).await;
    net.shutdown().await;
}

/// The signature with `s` replaced by `n - s` (valid, but high S).
fn high_s(sig: &Signature) -> Vec<u8> {
    const N: [u8; 32] = [
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFE, 0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48, 0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36,
        0x41, 0x41,
    ];
    let bytes = sig.as_bytes();
    let mut out = bytes[..32].to_vec();
    let s = &bytes[32..];
    let mut diff = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = if d < 0 {
            d += 256;
            1
        } else {
            0
        };
        diff[i] = d as u8;
    }
    out.extend_from_slice(&diff);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_the_mempool_gets_resource_exhausted_and_memory_stays_bounded() {
    let bound = MempoolConfig {
        max_txs: 100,
        ..MempoolConfig::default()
    };
    let mut net = LocalNetwork::start_with(4, bound).await;
    let mut c = ClientClient::connect(net.urls()[0].clone()).await.unwrap();
    // Fund four senders, then stop two validators: nothing commits, so the
    // flood piles up in the mempool.
    let senders: Vec<SecretKey> = (0..4).map(|_| SecretKey::generate()).collect();
    fund(&net, &mut c, &senders).await;
    net.stop(2).await;
    net.stop(3).await;
    let (mut admitted, mut exhausted) = (Vec::new(), 0);
    for s in &senders {
        for nonce in 1..=40 {
            let t = pay(net.genesis.hash(), s, nonce, &net.faucet, 1);
            match submit(&mut c, (&t).into()).await {
                Ok(()) => admitted.push((s.public_key().clone(), nonce)),
                Err(e) => {
                    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                    assert!(e.message().starts_with("mempool_full"), "{e:?}");
                    exhausted += 1;
                }
            }
        }
    }
    assert!(
        admitted.len() <= 100,
        "{} admitted past the bound",
        admitted.len()
    );
    assert!(exhausted >= 60, "only {exhausted} refused");
    still_serving(&net).await;
    // Back to a quorum: every admitted transfer commits.
    net.restart(2).await;
    net.restart(3).await;
    for s in &senders {
        let last = admitted
            .iter()
            .filter(|(k, _)| k == s.public_key())
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0);
        net.wait_for_nonce(s.public_key(), last, WAIT).await;
    }
    net.assert_agreement();
    net.shutdown().await;
}

/// Funds each of `keys` with 1 000 000 from the faucet (its first
/// transfer) and waits for that to commit.
async fn fund(net: &LocalNetwork, c: &mut ClientClient<Channel>, keys: &[SecretKey]) {
    let funding = Transfer::new(
        net.genesis.hash(),
        net.faucet.public_key().clone(),
        1,
        FEE,
        keys.iter()
            .map(|s| Output {
                recipient: s.public_key().clone(),
                amount: 1_000_000,
            })
            .collect(),
        vec![],
    )
    .unwrap()
    .sign(&net.faucet);
    submit(c, (&funding).into()).await.unwrap();
    net.wait_for_nonce(net.faucet.public_key(), 1, WAIT).await;
}

/// A signed transfer of `amount` from `from` to `to`.
fn pay(network: Hash, from: &SecretKey, nonce: u64, to: &SecretKey, amount: u64) -> SignedTransfer {
    Transfer::new(
        network,
        from.public_key().clone(),
        nonce,
        FEE,
        vec![Output {
            recipient: to.public_key().clone(),
            amount,
        }],
        vec![],
    )
    .unwrap()
    .sign(from)
}

/// Funded accounts that skip a nonce send transfers that can never commit;
/// they are parked, bounded apart, and give way, so everyone else's
/// payments still get in and commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_behind_a_nonce_gap_cannot_fill_the_mempool() {
    let bound = MempoolConfig {
        max_txs: 100,
        max_parked: 20,
        ..MempoolConfig::default()
    };
    let net = LocalNetwork::start_with(4, bound).await;
    let mut c = ClientClient::connect(net.urls()[0].clone()).await.unwrap();
    let mut gappers: Vec<SecretKey> = (0..5).map(|_| SecretKey::generate()).collect();
    fund(&net, &mut c, &gappers).await;
    let honest = gappers.pop().expect("five funded");
    // 4 × 60 transfers behind a missing nonce 1: more than the whole pool.
    for s in &gappers {
        for nonce in 2..=61 {
            let t = pay(net.genesis.hash(), s, nonce, &net.faucet, 1);
            submit(&mut c, (&t).into())
                .await
                .unwrap_or_else(|e| panic!("parked transfer refused: {e:?}"));
        }
    }
    // All admitted (each newcomer past the parking bound took the room of
    // the oldest), and an orderable payment still gets in and commits.
    let payment = pay(net.genesis.hash(), &honest, 1, &net.faucet, 5);
    submit(&mut c, (&payment).into())
        .await
        .unwrap_or_else(|e| panic!("payment refused behind parked transfers: {e:?}"));
    net.wait_for_nonce(honest.public_key(), 1, WAIT).await;
    for s in &gappers {
        assert_eq!(net.nonce(0, s.public_key()), 0, "nothing parked committed");
    }
    still_serving(&net).await;
    net.shutdown().await;
}
