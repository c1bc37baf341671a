//! The authenticated state tree: every account, and the burned total, as
//! leaves of a Jellyfish Merkle tree over SHA-256 (the `jmt` crate), one
//! tree version per block height. The header's `state_root` is its root,
//! so a client holding a certified header can check one account with a
//! proof of about 64 sibling hashes at most (ADR 0014).
//!
//! ```text
//!  parent tree (store, then the uncommitted branch's new nodes)
//!    + the block's touched accounts + burned ──put_value_set(height)──▶
//!  root, new nodes (written in the block's commit)
//! ```
//!
//! Only the paths of the accounts a block touches are rehashed. The
//! burned leaf is written by every block, so every height has a root node
//! of its own, even an empty block's.

use crate::storage::{Store, StoreError};
use chatpay_proto::state::{self, StateProof};
use chatpay_proto::{Account, Hash, PublicKey};
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Sha256Jmt, Version};
use std::collections::BTreeMap;

/// The nodes one block adds to the tree, by key.
pub type TreeNodes = BTreeMap<NodeKey, Node>;

/// What one block does to the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeUpdate {
    /// The root after the block.
    pub root: Hash,
    /// The nodes it adds.
    pub nodes: TreeNodes,
    /// The nodes of earlier versions it replaces (stale from its version on).
    pub stale: Vec<NodeKey>,
}

/// Read access to the nodes of the tree a block builds on.
pub trait TreeView {
    /// The node at `key`, `None` if there is none.
    fn tree_node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError>;
}

/// A tree with no nodes: what genesis builds on.
pub struct EmptyTree;

impl TreeView for EmptyTree {
    fn tree_node(&self, _: &NodeKey) -> Result<Option<Node>, StoreError> {
        Ok(None)
    }
}

struct Reader<'a, V: ?Sized>(&'a V);

impl<V: TreeView + ?Sized> TreeReader for Reader<'_, V> {
    fn get_node_option(&self, key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.0.tree_node(key)?)
    }

    fn get_value_option(&self, _: Version, _: KeyHash) -> anyhow::Result<Option<OwnedValue>> {
        // Writing the tree never reads values; proofs read accounts from
        // the account table.
        anyhow::bail!("the state tree keeps no values")
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        Ok(None)
    }
}

/// The root, the new nodes and the replaced ones of the tree after the
/// block at `height` leaves `accounts` (its touched accounts) and
/// `burned`, on the tree of height − 1 that `view` holds.
///
/// # Errors
/// When a node of the parent tree cannot be read, or is missing (the
/// store is corrupt), or there is no tree of height − 1.
pub fn update<V: TreeView + ?Sized>(
    view: &V,
    height: u64,
    accounts: &[(PublicKey, Account)],
    burned: u64,
) -> Result<TreeUpdate, StoreError> {
    let mut set: Vec<(KeyHash, OwnedValue)> = Vec::with_capacity(accounts.len() + 1);
    for (key, account) in accounts {
        let leaf = state::account_leaf(account);
        set.push((KeyHash(state::account_key(key).0), leaf));
    }
    set.push((KeyHash(state::burned_key().0), state::burned_leaf(burned)));
    // The tree takes a missing root for an empty tree; a parent that is
    // not there is a broken store, not a fresh start.
    if let Some(parent) = height.checked_sub(1) {
        if root_at(view, parent)?.is_none() {
            return Err(StoreError::Corrupt {
                what: "state tree",
                detail: format!("no root at version {parent} to build version {height} on"),
            });
        }
    }
    let reader = Reader(view);
    // The batch insertion sorts the keys and hashes each new node once;
    // inserting key by key rehashes a path per key (executing a block of
    // 1 000 transfers took 8.6 ms that way, 3.9 ms this way).
    let (roots, batch) = Sha256Jmt::new(&reader)
        .batch_put_value_sets(vec![set], None, height)
        .map_err(|e| StoreError::Corrupt {
            what: "state tree",
            detail: format!("updating version {height}: {e:#}"),
        })?;
    let root = roots.first().expect("one root per value set");
    Ok(TreeUpdate {
        root: Hash(root.0),
        nodes: batch.node_batch.nodes().clone(),
        stale: batch
            .stale_node_index_batch
            .into_iter()
            .map(|s| s.node_key)
            .collect(),
    })
}

/// A committed tree with its values, for proofs.
struct StoreReader<'a>(&'a dyn Store);

impl TreeReader for StoreReader<'_> {
    fn get_node_option(&self, key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(Store::tree_node(self.0, &encode_key(key))?
            .map(|bytes| decode_node(&bytes))
            .transpose()?)
    }

    fn get_value_option(
        &self,
        version: Version,
        key: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self.0.state_value(&Hash(key.0), version)?)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        Ok(None)
    }
}

/// The leaf value of `key` in the committed tree of `version` (`None` when
/// the key is absent), and its proof against that version's root.
///
/// # Errors
/// When the tree of `version` is not in the store (pruned, or not yet
/// written), or a node or value cannot be read.
pub fn prove(
    store: &dyn Store,
    version: u64,
    key: &Hash,
) -> Result<(Option<Vec<u8>>, StateProof), StoreError> {
    let corrupt = |e: anyhow::Error| StoreError::Corrupt {
        what: "state tree",
        detail: format!("proving a key at version {version}: {e:#}"),
    };
    let reader = StoreReader(store);
    let (value, proof) = Sha256Jmt::new(&reader)
        .get_with_proof(KeyHash(key.0), version)
        .map_err(corrupt)?;
    let bytes = borsh::to_vec(&proof).expect("encoding into memory cannot fail");
    let proof = decode_proof(&bytes).ok_or_else(|| StoreError::Corrupt {
        what: "state tree",
        detail: "a proof of an unknown layout".into(),
    })?;
    Ok((value, proof))
}

/// The tree's proof that the leaves of `version` up to `last` (which is
/// in the tree) are all there are from the first key on, given those
/// leaves: the siblings right of `last`'s path (borsh, as the jmt crate
/// encodes its `SparseMerkleRangeProof`).
///
/// # Errors
/// When the tree of `version` is not in the store or lacks `last`.
pub fn range_proof(store: &dyn Store, version: u64, last: &Hash) -> Result<Vec<u8>, StoreError> {
    let reader = StoreReader(store);
    let proof = Sha256Jmt::new(&reader)
        .get_range_proof(KeyHash(last.0), version)
        .map_err(|e| StoreError::Corrupt {
            what: "state tree",
            detail: format!("a range proof at version {version}: {e:#}"),
        })?;
    Ok(borsh::to_vec(&proof).expect("encoding into memory cannot fail"))
}

/// Most bytes of a range proof: a count and at most 256 tagged siblings.
pub const MAX_RANGE_PROOF_BYTES: usize = 4 + 256 * 65;

/// Tree nodes as stored: (encoded key, encoded node).
type Encoded = Vec<(Vec<u8>, Vec<u8>)>;

/// Nodes a restore completes, encoded (key, node), until they are stored.
#[derive(Default)]
struct NodeSink(std::sync::Mutex<Encoded>);

impl jmt::storage::TreeWriter for NodeSink {
    fn write_node_batch(&self, batch: &jmt::storage::NodeBatch) -> anyhow::Result<()> {
        let mut nodes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        nodes.extend(
            batch
                .nodes()
                .iter()
                .map(|(k, n)| (encode_key(k), encode_node(n))),
        );
        Ok(())
    }
}

/// Rebuilds the tree of one version from its leaves, in key order, in
/// chunks, each checked with the server's range proof against the root
/// the version must have (the jmt crate's restore, which Diem and Aptos
/// state sync use): a chunk with a leaf changed, left out or added does
/// not verify.
///
/// The jmt restore holds its writer as a trait object that is not `Send`,
/// so it lives on a thread of its own and this handle (which is) talks to
/// it; every call waits for its answer, so the restore's work happens
/// in call order, as if in place.
pub struct TreeRestore {
    requests: std::sync::mpsc::Sender<RestoreRequest>,
    answers: std::sync::mpsc::Receiver<Result<Encoded, String>>,
    version: u64,
}

enum RestoreRequest {
    Add(Vec<(Hash, Vec<u8>)>, Vec<u8>),
    Finish,
}

/// The restore thread: answers each request until `Finish` or until the
/// handle is dropped.
fn restore_thread(
    version: u64,
    root: Hash,
    requests: &std::sync::mpsc::Receiver<RestoreRequest>,
    answers: &std::sync::mpsc::Sender<Result<Encoded, String>>,
) {
    use jmt::restore::StateSnapshotReceiver;
    let sink = std::sync::Arc::new(NodeSink::default());
    let take =
        |sink: &NodeSink| std::mem::take(&mut *sink.0.lock().unwrap_or_else(|e| e.into_inner()));
    let mut restore = jmt::restore::JellyfishMerkleRestore::<sha2_jmt::Sha256>::new_overwrite(
        sink.clone(),
        version,
        jmt::RootHash(root.0),
    )
    .expect("a restore into memory starts");
    while let Ok(request) = requests.recv() {
        let answer = match request {
            RestoreRequest::Add(leaves, proof) => {
                add_chunk(&mut restore, leaves, &proof).map(|()| take(&sink))
            }
            RestoreRequest::Finish => {
                let done = restore.finish().map_err(|e| format!("{e:#}"));
                let _ = answers.send(done.map(|()| take(&sink)));
                return;
            }
        };
        if answers.send(answer).is_err() {
            return;
        }
    }
}

fn add_chunk(
    restore: &mut jmt::restore::JellyfishMerkleRestore<sha2_jmt::Sha256>,
    leaves: Vec<(Hash, Vec<u8>)>,
    proof: &[u8],
) -> Result<(), String> {
    use jmt::restore::StateSnapshotReceiver;
    if proof.len() > MAX_RANGE_PROOF_BYTES {
        return Err(format!("a range proof of {} bytes", proof.len()));
    }
    let proof: jmt::proof::SparseMerkleRangeProof<sha2_jmt::Sha256> =
        borsh::from_slice(proof).map_err(|e| format!("not a range proof: {e}"))?;
    let chunk = leaves.into_iter().map(|(k, v)| (KeyHash(k.0), v)).collect();
    restore
        .add_chunk(chunk, proof)
        .map_err(|e| format!("{e:#}"))
}

impl TreeRestore {
    /// A restore of the tree of `version`, whose root must be `root`.
    pub fn new(version: u64, root: &Hash) -> Self {
        let (requests, inbox) = std::sync::mpsc::channel();
        let (outbox, answers) = std::sync::mpsc::channel();
        let root = *root;
        std::thread::Builder::new()
            .name("state-restore".into())
            .spawn(move || restore_thread(version, root, &inbox, &outbox))
            .expect("a thread starts");
        Self {
            requests,
            answers,
            version,
        }
    }

    fn ask(&self, request: RestoreRequest) -> Result<Encoded, String> {
        self.requests
            .send(request)
            .map_err(|_| "the restore ended".to_string())?;
        self.answers
            .recv()
            .map_err(|_| "the restore ended".to_string())?
    }

    /// Adds the next chunk of leaves (key, leaf), keys above every key
    /// added before, and checks everything added so far against the root
    /// with `proof` ([`range_proof`] of the chunk's last key). Returns the
    /// nodes the chunk completed, to store. After an error the restore is
    /// unusable (the tree restore has taken in part of the chunk).
    ///
    /// # Errors
    /// When the chunk is empty, out of order, or does not verify; or the
    /// proof is not one.
    pub fn add(&mut self, leaves: Vec<(Hash, Vec<u8>)>, proof: &[u8]) -> Result<Encoded, String> {
        self.ask(RestoreRequest::Add(leaves, proof.to_vec()))
    }

    /// Ends the restore after the last chunk: the nodes still to store,
    /// the root among them.
    ///
    /// # Errors
    /// When no leaf was added.
    pub fn finish(self) -> Result<Encoded, String> {
        self.ask(RestoreRequest::Finish)
    }

    /// The version being restored.
    pub fn version(&self) -> u64 {
        self.version
    }
}

/// The tree's proof, in its borsh layout (`Option<leaf>`, then a `u32`
/// count of siblings, each a tagged node: 0 empty, 1 internal (left,
/// right), 2 leaf (key, value hash)), as a [`StateProof`] of hashes.
fn decode_proof(bytes: &[u8]) -> Option<StateProof> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        *rest = tail;
        Some(head)
    }
    let mut rest = bytes;
    let mut take = |n: usize| take(&mut rest, n);
    let hash = |b: &[u8]| Hash::from_slice(b).expect("32 bytes");
    let leaf = match take(1)?[0] {
        0 => None,
        1 => {
            let b = take(64)?;
            Some((hash(&b[..32]), hash(&b[32..])))
        }
        _ => return None,
    };
    let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    if count > state::MAX_SIBLINGS {
        return None;
    }
    let mut siblings = Vec::with_capacity(count);
    for _ in 0..count {
        let node = match take(1)?[0] {
            0 => state::PLACEHOLDER_HASH,
            1 => {
                let b = take(64)?;
                state::internal_hash(&hash(&b[..32]), &hash(&b[32..]))
            }
            2 => {
                let b = take(64)?;
                state::leaf_hash(&hash(&b[..32]), &hash(&b[32..]))
            }
            _ => return None,
        };
        siblings.push(node);
    }
    let _ = take;
    rest.is_empty().then_some(StateProof { leaf, siblings })
}

/// The root of the tree at `version`, `None` if the tree has no root node
/// of that version.
///
/// # Errors
/// When a node cannot be read.
pub fn root_at<V: TreeView + ?Sized>(view: &V, version: u64) -> Result<Option<Hash>, StoreError> {
    let reader = Reader(view);
    Sha256Jmt::new(&reader)
        .get_root_hash_option(version)
        .map(|r| r.map(|r| Hash(r.0)))
        .map_err(|e| StoreError::Corrupt {
            what: "state tree",
            detail: format!("reading the root of version {version}: {e:#}"),
        })
}

/// The stored form of a node key.
pub fn encode_key(key: &NodeKey) -> Vec<u8> {
    borsh::to_vec(key).expect("encoding into memory cannot fail")
}

/// The stored form of a node.
pub fn encode_node(node: &Node) -> Vec<u8> {
    borsh::to_vec(node).expect("encoding into memory cannot fail")
}

/// A stored node read back.
///
/// # Errors
/// When the bytes are not a node (the store is corrupt).
pub fn decode_node(bytes: &[u8]) -> Result<Node, StoreError> {
    borsh::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: "state tree node",
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Nodes(RefCell<TreeNodes>);

    impl TreeView for Nodes {
        fn tree_node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError> {
            Ok(self.0.borrow().get(key).cloned())
        }
    }

    fn account(n: u8) -> PublicKey {
        let mut b = [0u8; 32];
        b[31] = n;
        chatpay_proto::SecretKey::from_slice(&b)
            .unwrap()
            .public_key()
            .clone()
    }

    #[test]
    fn the_root_depends_on_every_leaf_and_not_on_history() {
        let tree = Nodes::default();
        let a = (
            account(1),
            Account {
                balance: 10,
                nonce: 0,
                ..Account::default()
            },
        );
        let b = (
            account(2),
            Account {
                balance: 20,
                nonce: 0,
                ..Account::default()
            },
        );
        let put = |v, accounts: &[(PublicKey, Account)], burned| {
            let u = update(&tree, v, accounts, burned).unwrap();
            tree.0.borrow_mut().extend(u.nodes);
            u.root
        };
        let r0 = put(0, &[a.clone(), b.clone()], 0);
        // An empty block still gets a root of its own, equal in value.
        let r1 = put(1, &[], 0);
        assert_eq!(r0, r1);
        let moved = Account {
            balance: 9,
            nonce: 1,
            ..Account::default()
        };
        let r2 = put(2, &[(a.0.clone(), moved)], 1);
        assert_ne!(r1, r2);
        assert_eq!(root_at(&tree, 1).unwrap(), Some(r1));
        assert_eq!(root_at(&tree, 2).unwrap(), Some(r2));
        assert_eq!(root_at(&tree, 3).unwrap(), None);
        // The same state built at once: the same root.
        let fresh = Nodes::default();
        let direct = update(&fresh, 0, &[(a.0.clone(), moved), b.clone()], 1).unwrap();
        assert_eq!(direct.root, r2);
        // The burned total is in the root.
        let other = update(&fresh, 0, &[(a.0, moved), b], 2).unwrap();
        assert_ne!(other.root, r2);
    }

    fn commit(store: &dyn Store, version: u64, accounts: Vec<(PublicKey, Account)>) -> Hash {
        let u = update(store, version, &accounts, 0).unwrap();
        let parent = store.last_header().unwrap();
        let header = chatpay_proto::BlockHeader {
            genesis_hash: Hash::default(),
            height: version,
            round: version,
            parent_hash: parent.map_or(Hash::default(), |p| p.hash()),
            proposer: 0,
            timestamp_ms: 0,
            tx_count: 0,
            tx_root: chatpay_proto::merkle_root(&[]),
            state_root: u.root,
        };
        store
            .commit_block(&crate::storage::BlockCommit {
                header,
                certificate: None,
                transactions: vec![],
                receipts: vec![],
                accounts,
                burned: 0,
                tree_nodes: u
                    .nodes
                    .iter()
                    .map(|(k, n)| (encode_key(k), encode_node(n)))
                    .collect(),
                stale_tree_nodes: u.stale.iter().map(encode_key).collect(),
                history: vec![],
            })
            .unwrap();
        u.root
    }

    #[test]
    fn proofs_of_accounts_and_of_absence_verify_and_forgeries_do_not() {
        let store = crate::storage::MemoryStore::new_empty();
        let with = |b: u64| Account {
            balance: b,
            ..Account::default()
        };
        let mut all: Vec<_> = (1..=200u8).map(|i| (account(i), with(i.into()))).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let root0 = commit(&store, 0, all);
        let moved: Vec<_> = (1..=10u8)
            .map(|i| (account(i), with(1_000 + u64::from(i))))
            .collect();
        let mut moved = moved;
        moved.sort_by(|a, b| a.0.cmp(&b.0));
        let root1 = commit(&store, 1, moved);
        for (i, version, root, balance) in
            [(3u8, 1, root1, 1_003), (3, 0, root0, 3), (77, 1, root1, 77)]
        {
            let key = state::account_key(&account(i));
            let (leaf, proof) = prove(&store, version, &key).unwrap();
            let leaf = leaf.expect("the account is in the tree");
            assert_eq!(state::decode_account_leaf(&leaf), Some(with(balance)));
            proof.verify(&root, &key, Some(&leaf)).unwrap();
            // The tree's own check of its own proof agrees.
            let reader = StoreReader(&store);
            let (_, own) = Sha256Jmt::new(&reader)
                .get_with_proof(KeyHash(key.0), version)
                .unwrap();
            own.verify(jmt::RootHash(root.0), KeyHash(key.0), Some(&leaf))
                .unwrap();
            // Another balance, another root, a sibling changed or dropped.
            let other = state::account_leaf(&with(balance + 1));
            assert_eq!(
                proof.verify(&root, &key, Some(&other)),
                Err(state::StateProofError::WrongValue)
            );
            let other_root = if root == root0 { root1 } else { root0 };
            assert!(proof.verify(&other_root, &key, Some(&leaf)).is_err());
            let mut bent = proof.clone();
            bent.siblings[0].0[0] ^= 1;
            assert!(bent.verify(&root, &key, Some(&leaf)).is_err());
            let mut short = proof.clone();
            short.siblings.pop();
            assert!(short.verify(&root, &key, Some(&leaf)).is_err());
            // An inclusion proof does not prove absence.
            assert_eq!(
                proof.verify(&root, &key, None),
                Err(state::StateProofError::Included)
            );
        }
        // An account that does not exist: a proof of absence, which proves
        // no value for it.
        let key = state::account_key(&account(250));
        let (leaf, proof) = prove(&store, 1, &key).unwrap();
        assert_eq!(leaf, None);
        proof.verify(&root1, &key, None).unwrap();
        let made_up = state::account_leaf(&with(5));
        assert!(proof.verify(&root1, &key, Some(&made_up)).is_err());
        // Nor does it prove the absence of an account that exists.
        let present = state::account_key(&account(9));
        assert!(proof.verify(&root1, &present, None).is_err());
    }

    #[test]
    fn a_missing_parent_node_is_an_error() {
        let err = update(&EmptyTree, 5, &[], 0).unwrap_err();
        assert!(err.to_string().contains("state tree"), "{err}");
    }
}
