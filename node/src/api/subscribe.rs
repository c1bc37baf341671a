//! `SubscribeAccount`: replay an account's history entries from a height,
//! then follow new commits, with no gap and no duplicate; each event
//! carries its number in the account's history, so a client that holds a
//! verified account sees at once an entry left out.
//!
//! The commit notification receiver is taken *before* the replay reads the
//! store, so every block committed after the replay's last read arrives as a
//! notification; a position cursor drops what the replay already sent. A
//! subscriber that falls behind the notification buffer re-reads the store
//! from its cursor.

use super::cache::SubscriptionSlot;
use super::service::internal;
use crate::ledger::{CommittedBlock, Ledger};
use crate::storage::TxPosition;
use chatpay_proto::{PublicKey, pb};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// Events buffered per subscriber before the server waits for the client.
const STREAM_BUFFER: usize = 256;
/// Entries read from the store per replay step.
const REPLAY_PAGE: usize = 256;

type Sender = mpsc::Sender<Result<pb::AccountEvent, Status>>;

/// Starts a subscription task holding `slot`; the stream ends when the
/// client goes away (noticed at once, not at the next event, so the slot
/// frees with it).
pub fn subscribe(
    ledger: Arc<Ledger>,
    key: PublicKey,
    from_height: u64,
    mut stopping: watch::Receiver<bool>,
    slot: SubscriptionSlot,
) -> ReceiverStream<Result<pb::AccountEvent, Status>> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let notifications = ledger.subscribe();
    tokio::spawn(async move {
        let _slot = slot;
        let result = tokio::select! {
            biased;
            _ = stopping.wait_for(|s| *s) => Err(Status::unavailable("node is shutting down; resubscribe elsewhere")),
            () = tx.closed() => Ok(()),
            r = follow(&ledger, &key, (from_height, 0), notifications, &tx) => r,
        };
        if let Err(status) = result {
            let _ = tx.send(Err(status)).await;
        }
    });
    ReceiverStream::new(rx)
}

/// Why a subscription stopped early.
enum Stop {
    ClientGone,
    Failed(Status),
}

async fn follow(
    ledger: &Ledger,
    key: &PublicKey,
    mut cursor: TxPosition,
    mut notifications: broadcast::Receiver<Arc<CommittedBlock>>,
    tx: &Sender,
) -> Result<(), Status> {
    let run = async {
        replay(ledger, key, &mut cursor, tx).await?;
        loop {
            match notifications.recv().await {
                Ok(block) => live(&block, key, &mut cursor, tx).await?,
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "subscriber lagged; replaying from the store");
                    replay(ledger, key, &mut cursor, tx).await?;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    };
    match run.await {
        Ok(()) | Err(Stop::ClientGone) => Ok(()),
        Err(Stop::Failed(status)) => Err(status),
    }
}

async fn send(tx: &Sender, event: pb::CommittedTransaction, number: u64) -> Result<(), Stop> {
    tx.send(Ok(pb::AccountEvent {
        transaction: Some(event),
        history_index: number,
    }))
    .await
    .map_err(|_| Stop::ClientGone)
}

async fn replay(
    ledger: &Ledger,
    key: &PublicKey,
    cursor: &mut TxPosition,
    tx: &Sender,
) -> Result<(), Stop> {
    let store = ledger.store();
    loop {
        let page = store
            .history_from(key, *cursor, REPLAY_PAGE)
            .map_err(|e| Stop::Failed(internal(e)))?;
        if page.is_empty() {
            return Ok(());
        }
        for entry in page {
            let record = store
                .transaction(&entry.tx_id)
                .map_err(|e| Stop::Failed(internal(e)))?
                .ok_or_else(|| {
                    Stop::Failed(Status::internal("history lists an unknown transaction"))
                })?;
            send(
                tx,
                pb::CommittedTransaction {
                    tx_id: entry.tx_id.0.to_vec(),
                    transaction: Some((&record.transaction).into()),
                    height: record.height,
                    index: record.index,
                    receipt: Some((&record.receipt).into()),
                },
                entry.number,
            )
            .await?;
            *cursor = (entry.position.0, entry.position.1 + 1);
        }
    }
}

async fn live(
    block: &CommittedBlock,
    key: &PublicKey,
    cursor: &mut TxPosition,
    tx: &Sender,
) -> Result<(), Stop> {
    let height = block.header.height;
    for entry in block.history_of(key) {
        let index = entry.position.1;
        if (height, index) < *cursor {
            continue;
        }
        let (t, receipt) = (
            &block.transactions[index as usize],
            &block.receipts[index as usize],
        );
        send(
            tx,
            pb::CommittedTransaction {
                tx_id: t.tx_id().0.to_vec(),
                transaction: Some(t.into()),
                height,
                index,
                receipt: Some(receipt.into()),
            },
            entry.number,
        )
        .await?;
        *cursor = (height, index + 1);
    }
    if (height + 1, 0) > *cursor {
        *cursor = (height + 1, 0);
    }
    Ok(())
}
