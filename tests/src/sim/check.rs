//! The invariants, checked against every honest validator's store after
//! every simulated millisecond.

use chatpay_node::consensus::safety::SafetyData;
use chatpay_node::execution::state_tree;
use chatpay_node::storage::{MemoryStore, Store};
use chatpay_proto::{Hash, TxId, state};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What a client was told about one transfer.
#[derive(Debug, Clone)]
pub struct SeenCommitted {
    /// Height the validator reported.
    pub height: u64,
    /// The validator that reported it.
    pub validator: usize,
}

/// The last vote a validator was seen to have recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VoteSeen {
    round: u64,
    block: Hash,
}

/// Everything the checker remembers across steps.
pub struct Checker {
    honest: Vec<usize>,
    supply: u128,
    /// Block hash per height, as the first validator committed it.
    canonical: BTreeMap<u64, (Hash, usize)>,
    /// Height each validator's store was last checked at.
    heights: Vec<u64>,
    /// Transfers each validator executed.
    executed: Vec<BTreeSet<TxId>>,
    /// Highest round each validator's safety record was seen at.
    voted_round: Vec<u64>,
    last_vote: Vec<Option<VoteSeen>>,
    /// Highest round any honest validator voted or timed out in.
    pub max_round: u64,
    /// Validators seen to join from a state snapshot.
    pub snapshot_joins: usize,
    /// Every violation found, in order.
    pub violations: Vec<String>,
}

fn short(h: &Hash) -> String {
    hex::encode(&h.0[..4])
}

impl Checker {
    /// A checker of `validators` stores, of which `honest` are checked, for
    /// a chain whose genesis holds `supply` base units.
    pub fn new(validators: usize, honest: Vec<usize>, supply: u128) -> Self {
        Self {
            honest,
            supply,
            canonical: BTreeMap::new(),
            heights: vec![0; validators],
            executed: vec![BTreeSet::new(); validators],
            voted_round: vec![0; validators],
            last_vote: vec![None; validators],
            max_round: 0,
            snapshot_joins: 0,
            violations: Vec::new(),
        }
    }

    /// The honest validators.
    pub fn honest(&self) -> &[usize] {
        &self.honest
    }

    /// Committed height of validator `v` at the last check.
    pub fn height(&self, v: usize) -> u64 {
        self.heights[v]
    }

    /// The block every honest validator committed at `height`, if any did.
    pub fn block_at(&self, height: u64) -> Option<Hash> {
        self.canonical.get(&height).map(|(h, _)| *h)
    }

    /// Validator `v`'s chain data was deleted on purpose (its safety
    /// record kept): it starts again from genesis, and what it executes
    /// again is checked against the canonical chain as before.
    pub fn wiped(&mut self, v: usize) {
        self.heights[v] = 0;
        self.executed[v].clear();
    }

    fn violation(&mut self, now_ms: u64, what: String) {
        self.violations.push(format!("t={now_ms} ms: {what}"));
    }

    /// Checks every honest validator's store; commits go to `trace`.
    pub fn check(&mut self, now_ms: u64, stores: &[Arc<MemoryStore>], trace: &mut Vec<String>) {
        for i in 0..self.honest.len() {
            let v = self.honest[i];
            if let Err(e) = self.check_one(now_ms, v, &stores[v], trace) {
                self.violation(now_ms, format!("v{v}: store read failed: {e}"));
            }
        }
    }

    fn check_one(
        &mut self,
        now_ms: u64,
        v: usize,
        store: &MemoryStore,
        trace: &mut Vec<String>,
    ) -> Result<(), chatpay_node::storage::StoreError> {
        let height = store.committed_height()?.unwrap_or(0);
        let before = self.heights[v];
        if height < before {
            self.violation(
                now_ms,
                format!("v{v} lost committed blocks: height {before} went back to {height}"),
            );
            self.heights[v] = height;
        }
        // A validator that joined from a snapshot at height H keeps no
        // block below H (but genesis); block H is the snapshot's header,
        // which must be the canonical one like every block after it.
        let first_full = store.first_full_height()?;
        if first_full > 1 && before < first_full - 1 {
            self.snapshot_joins += 1;
            trace.push(format!(
                "{now_ms} v{v} joined from a snapshot at height {}",
                first_full - 1
            ));
        }
        for h in (before + 1).max(first_full - 1)..=height {
            let Some(block) = store.block(h)? else {
                self.violation(
                    now_ms,
                    format!("v{v} reports height {height} but has no block {h}"),
                );
                continue;
            };
            let hash = block.header.hash();
            trace.push(format!("{now_ms} v{v} commit {h} {}", short(&hash)));
            match self.canonical.get(&h) {
                None => {
                    self.canonical.insert(h, (hash, v));
                }
                Some((first, by)) if *first != hash => {
                    let (first, by) = (*first, *by);
                    self.violation(
                        now_ms,
                        format!(
                            "fork at height {h}: v{by} committed {}, v{v} committed {}",
                            short(&first),
                            short(&hash)
                        ),
                    );
                }
                Some(_) => {}
            }
            for id in &block.tx_ids {
                if !self.executed[v].insert(*id) {
                    self.violation(
                        now_ms,
                        format!("v{v} executed transfer {} twice", short(id)),
                    );
                }
                let Some(record) = store.transaction(id)? else {
                    continue;
                };
                let t = record.transaction.transfer();
                if t.is_expired_at(block.header.timestamp_ms) {
                    self.violation(
                        now_ms,
                        format!(
                            "v{v} committed transfer {} at height {h}, timestamp {} ms, after \
                             its expiry {} ms",
                            short(id),
                            block.header.timestamp_ms,
                            t.expires_at_ms().unwrap_or(0)
                        ),
                    );
                }
            }
        }
        if height != before {
            self.heights[v] = height;
            self.check_state(now_ms, v, store, height)?;
            let mut total: u128 = u128::from(store.burned()?);
            store.for_each_account(&mut |_, a| total += u128::from(a.balance))?;
            if total != self.supply {
                self.violation(
                    now_ms,
                    format!(
                        "v{v} at height {height}: balances and burned fees sum to {total}, genesis supply is {}",
                        self.supply
                    ),
                );
            }
        }
        if let Some(bytes) = store.safety_data()? {
            let Ok(data) = SafetyData::decode(&bytes, u32::try_from(v).unwrap_or(u32::MAX)) else {
                self.violation(now_ms, format!("v{v}: unreadable safety record"));
                return Ok(());
            };
            if data.last_voted_round > self.voted_round[v] {
                trace.push(format!("{now_ms} v{v} round {}", data.last_voted_round));
            }
            self.check_safety(now_ms, v, &data);
        }
        Ok(())
    }

    /// The validator's state tree at `height` is the state the certified
    /// header names (the same for every honest validator, as the headers
    /// are), and holds exactly the accounts of its account table.
    fn check_state(
        &mut self,
        now_ms: u64,
        v: usize,
        store: &MemoryStore,
        height: u64,
    ) -> Result<(), chatpay_node::storage::StoreError> {
        let Some(header) = store.block(height)?.map(|b| b.header) else {
            return Ok(()); // reported by the caller
        };
        let root = state_tree::root_at(store, height)?;
        if root != Some(header.state_root) {
            self.violation(
                now_ms,
                format!(
                    "v{v} at height {height}: state tree root {root:?}, the header says {}",
                    short(&header.state_root)
                ),
            );
        }
        let mut wrong = Vec::new();
        store.for_each_account(&mut |key, account| {
            let leaf = store.state_value(&state::account_key(key), height);
            if !matches!(leaf, Ok(Some(l)) if l == state::account_leaf(account)) {
                wrong.push(key.clone());
            }
        })?;
        if let Some(key) = wrong.first() {
            self.violation(
                now_ms,
                format!(
                    "v{v} at height {height}: {} accounts differ from their state tree leaf, {key:?} first",
                    wrong.len()
                ),
            );
        }
        Ok(())
    }

    fn check_safety(&mut self, now_ms: u64, v: usize, data: &SafetyData) {
        let seen = self.voted_round[v];
        if data.last_voted_round < seen {
            self.violation(
                now_ms,
                format!(
                    "v{v}'s safety record went back from round {seen} to {}: it signed before the record was durable",
                    data.last_voted_round
                ),
            );
        }
        self.voted_round[v] = seen.max(data.last_voted_round);
        self.max_round = self.max_round.max(data.last_voted_round);
        let vote = data.last_vote.as_ref().map(|x| VoteSeen {
            round: x.round,
            block: x.block_hash,
        });
        if let (Some(prev), Some(now)) = (self.last_vote[v], vote) {
            if prev.round == now.round && prev.block != now.block {
                self.violation(
                    now_ms,
                    format!(
                        "v{v} voted for two blocks in round {}: {} and {}",
                        now.round,
                        short(&prev.block),
                        short(&now.block)
                    ),
                );
            }
        }
        if vote.is_some() {
            self.last_vote[v] = vote;
        }
    }

    /// Checks that every transfer a client saw committed is committed, at
    /// the height it was reported at, on every honest validator that has
    /// reached that height.
    pub fn check_seen(
        &mut self,
        now_ms: u64,
        stores: &[Arc<MemoryStore>],
        seen: &BTreeMap<TxId, SeenCommitted>,
    ) {
        for i in 0..self.honest.len() {
            let v = self.honest[i];
            let height = self.heights[v];
            // Below this, a validator that joined from a snapshot keeps
            // no transactions.
            let kept_from = match stores[v].first_full_height() {
                Ok(h) => h,
                Err(e) => {
                    self.violation(now_ms, format!("v{v}: store read failed: {e}"));
                    continue;
                }
            };
            for (id, s) in seen {
                if s.height > height || s.height < kept_from {
                    continue;
                }
                match stores[v].transaction(id) {
                    Ok(Some(r)) if r.height == s.height => {}
                    Ok(found) => {
                        let at =
                            found.map_or("nowhere".to_string(), |r| format!("height {}", r.height));
                        self.violation(
                            now_ms,
                            format!(
                                "transfer {} that v{} reported committed at height {} is at {at} on v{v}",
                                short(id),
                                s.validator,
                                s.height
                            ),
                        );
                    }
                    Err(e) => self.violation(now_ms, format!("v{v}: store read failed: {e}")),
                }
            }
        }
    }
}
