//! Payment requests end to end: paying a link once, and the requester's
//! app seeing it paid (`FindPayment`, `SubscribePayments`) without the
//! payer telling it. Every payment reported is checked against its
//! finality proof, and against the request: the reference, the payee, the
//! amount and a successful receipt.

use super::{Payment, PaymentDetails, Signer, Wallet, payment_of};
use crate::client::RawClient;
use crate::request::unix_now_secs;
use crate::{PaymentRequest, WalletError};
use chatpay_proto::{Address, SignedTransfer, TxId, max_faulty, pb};
use std::time::Duration;

/// A payment of a request, final and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPayment {
    /// The payment (tx id, height, receipt, fee, total paid).
    pub payment: Payment,
    /// Who paid.
    pub from: Address,
    /// What the request's address received from it.
    pub amount: u64,
    /// The memo, as the requester's account reads it (see
    /// [`Wallet::read_memos_of`]).
    pub memo: String,
    /// Whether the memo was encrypted.
    pub memo_encrypted: bool,
}

impl Wallet {
    /// Pays a request link: refuses an expired link, and a request already
    /// paid ([`Wallet::find_request_payment`]: every validator asked, "not
    /// paid" only on f + 1 complete answers, so that one validator cannot
    /// hide the first payment). Two payers paying at the same moment both
    /// pay: neither can see the other's payment before it is final. `amount` is the payer's
    /// choice for a link without one (and must be `None` for a link with
    /// one). The payment carries the request's reference and expires with
    /// it.
    pub async fn pay_request(
        &self,
        from: &Signer,
        request: &PaymentRequest,
        amount: Option<u64>,
        public_memo: bool,
    ) -> Result<Payment, WalletError> {
        let amount = match (request.amount, amount) {
            (Some(asked), None) => asked,
            (None, Some(chosen)) => chosen,
            (Some(_), Some(_)) => {
                return Err(WalletError::Invalid(
                    "the link sets the amount; pay it without one".into(),
                ));
            }
            (None, None) => {
                return Err(WalletError::Invalid(
                    "the link has no amount; pay it with an amount".into(),
                ));
            }
        };
        request.check_not_expired(unix_now_secs())?;
        if let Some(paid) = self.find_request_payment(request).await? {
            return Err(WalletError::Invalid(format!(
                "this request is already paid: {} paid {} by transaction {} at height {}",
                paid.from,
                self.chain.format(paid.amount),
                paid.payment.tx_id,
                paid.payment.height
            )));
        }
        let details = PaymentDetails {
            memo: request.memo.clone().unwrap_or_default(),
            public_memo,
            fee: None,
            reference: request.reference,
            expires_at_ms: request.expires_at_ms(),
        };
        self.pay_with(from, &[(request.address.clone(), amount)], &details)
            .await
    }

    /// The first final payment of `request` (by its reference), if any.
    /// Every validator is asked for every page of payments carrying the
    /// reference; each payment reported is checked against its proof, so
    /// a validator can leave one out but not make one up. "Not paid" needs
    /// f + 1 complete answers (f + 1 include an honest one) from
    /// validators that keep every block; with fewer it is an error, never
    /// "not paid" (which would let a payer pay twice).
    pub async fn find_request_payment(
        &self,
        request: &PaymentRequest,
    ) -> Result<Option<RequestPayment>, WalletError> {
        let Some(reference) = request.reference else {
            return Ok(None);
        };
        // A payment committed and not provable yet (for a block or two, or
        // while the chain stalls) is neither found nor "unpaid": ask again.
        let deadline = tokio::time::Instant::now() + PENDING_WAIT;
        loop {
            match self.find_once(request, reference).await? {
                Found::Paid(paid) => return Ok(Some(*paid)),
                Found::Unpaid => return Ok(None),
                Found::Unknown(why) if tokio::time::Instant::now() >= deadline => {
                    return Err(WalletError::Unreachable {
                        tried: self.client.urls(),
                        last: format!("cannot tell whether the request is paid: {why}"),
                    });
                }
                Found::Unknown(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// One round of [`Wallet::find_request_payment`]: every validator,
    /// every page.
    async fn find_once(
        &self,
        request: &PaymentRequest,
        reference: chatpay_proto::PaymentReference,
    ) -> Result<Found, WalletError> {
        let answers = self
            .client
            .call_all(|c: RawClient| all_pages(c, reference.0.to_vec()))
            .await;
        let mut found = Vec::new();
        let (mut complete, mut pending) = (0, false);
        for (url, answer) in &answers {
            let Ok(pages) = answer else { continue };
            complete += usize::from(pages.complete && !pages.pruned && !pages.pending);
            pending |= pages.pending;
            for p in &pages.payments {
                let at = p.transaction.as_ref().map(|t| (t.height, t.index));
                match self.verify_found(p.clone(), request) {
                    Ok(Some(paid)) => found.push((at, paid)),
                    Ok(None) => {}
                    Err(e) => self.client.lied(url, &e.to_string()),
                }
            }
        }
        found.sort_by_key(|(at, _)| *at);
        if let Some((_, first)) = found.into_iter().next() {
            return Ok(Found::Paid(Box::new(first)));
        }
        // f + 1 of the pinned set, or every validator the wallet knows of
        // when it is told of fewer (a single --node is trusted as far as
        // hiding a payment, as it is for submitting one).
        let known = self.client.urls().len();
        let wanted = (max_faulty(self.validators.len()) + 1).min(known);
        Ok(match (complete >= wanted, pending) {
            (true, _) => Found::Unpaid,
            (false, true) => Found::Unknown(
                "a transfer carrying its reference is committed and not final yet".into(),
            ),
            (false, false) => Found::Unknown(format!(
                "{complete} validators answered in full, {wanted} are needed"
            )),
        })
    }

    /// Waits until `request` is paid (final and verified), for at most
    /// `timeout`: told at once by a `SubscribePayments` stream, and asking
    /// every validator ([`Wallet::find_request_payment`]) every 2 s, so
    /// that one silent or lying validator cannot hide the payment.
    pub async fn wait_request_paid(
        &self,
        request: &PaymentRequest,
        timeout: Duration,
    ) -> Result<RequestPayment, WalletError> {
        let Some(reference) = request.reference else {
            return Err(WalletError::Invalid(
                "the request has no reference to find its payment by".into(),
            ));
        };
        let ask = pb::SubscribePaymentsRequest {
            reference: reference.0.to_vec(),
            from_height: 0,
        };
        let follow = async {
            let mut stream = None;
            loop {
                if let Ok(Some(paid)) = self.find_request_payment(request).await {
                    return paid;
                }
                if stream.is_none() {
                    let called = self
                        .client
                        .call_named(|mut c: RawClient| {
                            let ask = ask.clone();
                            async move { c.subscribe_payments(ask).await }
                        })
                        .await;
                    stream = match called {
                        Ok((url, Ok(s))) => Some((url, s)),
                        _ => None,
                    };
                }
                let tick = tokio::time::sleep(Duration::from_secs(2));
                tokio::pin!(tick);
                let Some((url, s)) = stream.as_mut() else {
                    tick.await;
                    continue;
                };
                tokio::select! {
                    () = &mut tick => {}
                    next = s.message() => match next {
                        Ok(Some(p)) => match self.verify_found(p, request) {
                            Ok(Some(paid)) => return paid,
                            Ok(None) => {}
                            Err(e) => {
                                self.client.lied(url, &e.to_string());
                                stream = None;
                            }
                        },
                        // Ended: subscribe again after the tick, not at once
                        // (a validator closing streams at once would
                        // otherwise make this a busy loop).
                        Ok(None) | Err(_) => {
                            stream = None;
                            tick.await;
                        }
                    },
                }
            }
        };
        tokio::time::timeout(timeout, follow).await.map_err(|_| {
            WalletError::Invalid(format!(
                "the request is not paid after {} s",
                timeout.as_secs()
            ))
        })
    }

    /// Checks one reported payment: `Err` if its proof does not verify (the
    /// validator lied), `Ok(None)` if it is final but does not pay
    /// `request` (another reference, another payee, too little, failed).
    fn verify_found(
        &self,
        found: pb::FoundPayment,
        request: &PaymentRequest,
    ) -> Result<Option<RequestPayment>, WalletError> {
        let Some(committed) = found.transaction else {
            return Err(WalletError::Unverified(
                "a found payment without its transaction".into(),
            ));
        };
        let id = TxId::from_slice(&committed.tx_id).ok_or_else(|| {
            WalletError::Unverified("a found payment's tx id is malformed".into())
        })?;
        let answer = pb::GetTransactionResponse {
            status: Some(pb::get_transaction_response::Status::Committed(committed)),
            proof: found.proof,
        };
        let Some((record, _)) = self.check(&id, answer)? else {
            return Err(WalletError::Unverified(
                "a found payment that is not final".into(),
            ));
        };
        Ok(self
            .pays(&record.tx, request)
            .then(|| {
                let transfer = record.tx.transfer();
                let (memo, memo_encrypted) = self.memo_for(transfer, request.address.public_key());
                RequestPayment {
                    payment: payment_of(&record.tx, &record),
                    from: self.chain.address(transfer.sender()),
                    amount: paid_to(&record.tx, &request.address),
                    memo,
                    memo_encrypted,
                }
            })
            .filter(|p| p.payment.is_success()))
    }

    /// Whether `tx` carries `request`'s reference and pays its address at
    /// least the amount asked (any amount when it asks none).
    fn pays(&self, tx: &SignedTransfer, request: &PaymentRequest) -> bool {
        tx.transfer().reference() == request.reference.as_ref()
            && paid_to(tx, &request.address) >= request.amount.unwrap_or(1)
    }
}

/// Most pages of 16 payments read from one validator for one reference.
const MAX_FIND_PAGES: usize = 64;

/// How long [`Wallet::find_request_payment`] asks again while a payment
/// carrying the reference is committed and not final yet.
const PENDING_WAIT: Duration = Duration::from_secs(10);

/// What one round of asking found.
enum Found {
    Paid(Box<RequestPayment>),
    Unpaid,
    Unknown(String),
}

/// One validator's answer about a reference: every page of it.
struct Pages {
    payments: Vec<pb::FoundPayment>,
    /// It keeps blocks from a height above 1 only: it may not know one.
    pruned: bool,
    /// Every page was read (not cut at [`MAX_FIND_PAGES`]).
    complete: bool,
    /// It stopped at a committed transfer not provable yet.
    pending: bool,
}

/// Reads every page of `FindPayment(reference)` from one validator.
async fn all_pages(
    mut client: RawClient,
    reference: Vec<u8>,
) -> Result<tonic::Response<Pages>, tonic::Status> {
    let mut pages = Pages {
        payments: Vec::new(),
        pruned: false,
        complete: false,
        pending: false,
    };
    let mut from = (0u64, 0u32);
    for _ in 0..MAX_FIND_PAGES {
        let ask = pb::FindPaymentRequest {
            reference: reference.clone(),
            from_height: from.0,
            from_index: from.1,
            limit: 0,
        };
        let answer = client.find_payment(ask).await?.into_inner();
        pages.pruned |= answer.first_full_height > 1;
        pages.pending |= answer.pending;
        pages.payments.extend(answer.payments);
        let next = (answer.next_height, answer.next_index);
        if !answer.more || next <= from {
            pages.complete = !answer.more;
            break;
        }
        from = next;
    }
    Ok(tonic::Response::new(pages))
}

/// What `tx`'s outputs pay `to`, in all.
fn paid_to(tx: &SignedTransfer, to: &Address) -> u64 {
    tx.transfer()
        .outputs()
        .iter()
        .filter(|o| &o.recipient == to.public_key())
        .fold(0u64, |sum, o| sum.saturating_add(o.amount))
}
