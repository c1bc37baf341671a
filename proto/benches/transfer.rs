//! Micro-benchmarks of what every validator does to every transfer: build
//! its signing bytes and tx id, check its signature, and parse it off the
//! wire. `cargo bench -p chatpay-proto` (or `make microbench`).

use chatpay_proto::{Output, SecretKey, SignedTransfer, Transfer, pb};
use criterion::{Criterion, criterion_group, criterion_main};
use prost::Message as _;
use std::hint::black_box;

fn key(n: u8) -> SecretKey {
    let mut b = [0u8; 32];
    b[31] = n;
    SecretKey::from_slice(&b).expect("a valid scalar")
}

/// A chat payment: one recipient, `memo` bytes of memo.
fn transfer(memo: usize) -> Transfer {
    let out = Output {
        recipient: key(2).public_key().clone(),
        amount: 1_250_000,
    };
    Transfer::new(
        chatpay_proto::Hash([1; 32]),
        key(1).public_key().clone(),
        7,
        1_000,
        vec![out],
        vec![b'm'; memo],
    )
    .expect("within the limits")
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("transfer");
    for memo in [0, 256] {
        let t = transfer(memo);
        g.bench_function(format!("signing_bytes_and_tx_id/memo_{memo}"), |b| {
            b.iter(|| black_box(&t).tx_id())
        });
    }
    let sender = key(1);
    let signed = transfer(0).sign(&sender);
    g.bench_function("sign", |b| {
        b.iter_batched(
            || transfer(0),
            |t| t.sign(&sender),
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("verify", |b| {
        b.iter(|| black_box(&signed).verify().expect("a valid signature"))
    });
    let wire = pb::SignedTransaction::from(&signed).encode_to_vec();
    g.bench_function("decode_from_wire", |b| {
        b.iter(|| {
            let m = pb::SignedTransaction::decode(black_box(wire.as_slice())).expect("decodes");
            SignedTransfer::try_from(m).expect("well formed")
        })
    });
    g.bench_function("encode_to_wire", |b| {
        b.iter(|| pb::SignedTransaction::from(black_box(&signed)).encode_to_vec())
    });
    g.finish();
}

criterion_group!(transfer_benches, benches);
criterion_main!(transfer_benches);
