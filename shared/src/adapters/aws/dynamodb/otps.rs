//! OTP sessions on DynamoDB (docs/data-model.md, "OTPs"): send's one transaction (OTP,
//! destination, superseded OTP, counters, usage, idempotency) and its undo, verify and cancel
//! as single conditional updates that answer the old item when refused. The pumping guard's
//! counters are written by the stream worker (`guard.rs`), not here.

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    operation::update_item::UpdateItemError,
    types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem},
};

use super::{
    backoff, errors,
    errors::{canceled, Reason},
    items::{
        attr, counter_of, destination_of, destination_ttl, failures_of, from_item, gsi2sk, guard_ttl, service_attr,
        to_item, to_value, usage_item, CheckItem, CounterItem, DestinationEntry, EventItem, IdempotencyItem, Key,
        LimitItem, MessageItem, OtpItem, StoredDefinition,
    },
    n, s, DynamoStore, Expr, TransactError,
};
use crate::{
    domain::{
        error::{Error, Result},
        idempotency::WINDOW_MS,
        limits::{Counter, CounterKey, CounterOp, LimitDef},
        otp::{ChannelEvent, Check, Destination, Otp, OtpStatus, FAILURES_KEPT_MS, MAX_ATTEMPTS},
        send::TEST_PROVIDER_ID,
        time::Millis,
        usage::UsageKey,
    },
    ports::{CancelWrite, Lookup, OtpStore, SendPlan, SendSnapshot, SnapshotRequest, VerifyWrite},
};

/// Rounds of an undo that drops the parts whose condition no longer holds.
const MAX_UNDO_ROUNDS: u32 = 8;

/// The condition under which an OTP is pending at `:now` (what every OTP state change needs).
pub(super) const PENDING_AT_NOW: &str =
    "#status = :pending AND #expires_ms > :now AND (attribute_not_exists(#cancel_at_ms) OR #cancel_at_ms > :now)";

/// A settled OTP leaves the sparse index of pending ones (`gsi2`, the expiry sweeper's).
pub(super) const LEAVE_DUE_INDEX: &str = "REMOVE gsi2pk, gsi2sk";

/// A wrong code's count: one attempt used, the check recorded.
const COUNT_WRONG: &str =
    "SET #attempts = #attempts + :one, #checks = list_append(if_not_exists(#checks, :empty), :check)";
const VERIFIED_UPDATE: &str = "SET #status = :success, #updated_ms = :now, \
    #checks = list_append(if_not_exists(#checks, :empty), :check) REMOVE gsi2pk, gsi2sk";

fn pending_at(now: Millis) -> Expr {
    Expr::default()
        .name(attr::STATUS)
        .name(attr::EXPIRES_MS)
        .name(attr::CANCEL_AT_MS)
        .value(":pending", s(OtpStatus::Pending.as_str()))
        .value(":now", n(now))
}

/// `:check`, a one-element list to append, and `:empty` for an OTP without checks yet.
fn with_check(expr: Expr, check: &Check) -> Result<Expr> {
    Ok(expr
        .name(attr::CHECKS)
        .value(":check", AttributeValue::L(vec![to_value(&CheckItem::from(check))?]))
        .value(":empty", AttributeValue::L(vec![])))
}

impl DynamoStore {
    /// What a send (or a workflow step) counts, as one update per account and day: `ADD delta`
    /// to each category's attribute of that day's item in `shard`. Categories share the item
    /// (a send's `All` and channel are one transactional item, 2 WRU, not two); an undo
    /// (`delta` < 0) requires each count above zero, so it never takes back what was not counted.
    fn usage_updates(&self, usage: &[UsageKey], shard: u16, delta: i64) -> Result<Vec<TransactWriteItem>> {
        let mut days: Vec<(&str, &str, Vec<&'static str>)> = Vec::new();
        for key in usage {
            let category = key.category.as_str();
            match days.iter_mut().find(|(account, day, _)| *account == key.account_sid && *day == key.day) {
                Some((_, _, categories)) if !categories.contains(&category) => categories.push(category),
                Some(_) => {}
                None => days.push((&key.account_sid, &key.day, vec![category])),
            }
        }
        days.into_iter()
            .map(|(account, day, categories)| {
                let mut expr = Expr::default().value(":delta", n(delta));
                for category in &categories {
                    expr = expr.name(category);
                }
                let adds: Vec<String> = categories.iter().map(|c| format!("#{c} :delta")).collect();
                let condition = (delta < 0)
                    .then(|| categories.iter().map(|c| format!("#{c} > :zero")).collect::<Vec<_>>().join(" AND "));
                if condition.is_some() {
                    expr = expr.value(":zero", n(0));
                }
                self.update(
                    &Key::usage(account, day, shard),
                    &format!("ADD {}", adds.join(", ")),
                    condition.as_deref(),
                    expr,
                )
            })
            .collect()
    }

    /// The writes of `commit_send`, each with its condition, in one list.
    fn commit_items(&self, plan: &SendPlan) -> Result<Vec<TransactWriteItem>> {
        let otp = &plan.otp;
        let acct = &otp.account_sid;
        let mut tx = Vec::with_capacity(6 + plan.counters.len());
        tx.push(self.put(to_item(&OtpItem::from(otp))?, "attribute_not_exists(pk)", Expr::default())?);

        // The key's first use, or a use after its record's window ended (TTL is lazy).
        if let Some(r) = &plan.idempotency {
            tx.push(self.put(
                to_item(&IdempotencyItem::new(acct, r))?,
                "attribute_not_exists(pk) OR #created_ms <= :stale",
                Expr::default().name(attr::CREATED_MS).value(":stale", n(r.created_ms - WINDOW_MS)),
            )?);
        }

        tx.push(self.destination_update(plan)?);

        // Its deadline in the due index moves to the end of the guard time (an OTP no longer
        // pending has no `gsi2pk`, so the key alone puts nothing in the index).
        if let Some(old) = &plan.supersede {
            tx.push(
                self.update(
                    &Key::otp(acct, &old.sid),
                    "SET #cancel_at_ms = :t, #gsi2sk = :due",
                    Some("attribute_exists(pk)"),
                    Expr::default()
                        .name(attr::CANCEL_AT_MS)
                        .name(attr::GSI2SK)
                        .value(":t", n(old.cancel_at_ms))
                        .value(":due", s(gsi2sk(old.cancel_at_ms, &old.sid))),
                )?,
            );
        }

        for op in plan.counters.iter().filter(|op| !op.key().is_default()) {
            tx.push(match op {
                CounterOp::Open { key, window_end_ms, now_ms } => self.put(
                    to_item(&CounterItem::opened(Key::counter(key), *window_end_ms))?,
                    "attribute_not_exists(pk) OR #window_end_ms <= :now",
                    Expr::default().name(attr::WINDOW_END_MS).value(":now", n(*now_ms)),
                )?,
                CounterOp::Increment { key, window_end_ms, max } => self.update(
                    &Key::counter(key),
                    "SET #count = #count + :one",
                    Some("#window_end_ms = :end AND #count < :max"),
                    Expr::default()
                        .name(attr::COUNT)
                        .name(attr::WINDOW_END_MS)
                        .value(":one", n(1))
                        .value(":end", n(*window_end_ms))
                        .value(":max", n(*max)),
                )?,
            });
        }

        tx.extend(self.usage_updates(&plan.usage, usage_item(&otp.sid), 1)?);
        // No pumping-guard counter: the stream worker counts the send off the OTP item
        // (`guarded`), outside any transaction.
        Ok(tx)
    }

    /// The destination item's part of a send: this service's pointer (`svc:{service}`, put
    /// only if it is still what the snapshot read) and, for a send under the default limit, the
    /// limit's counter, in one conditional update: one transactional item, not two.
    fn destination_update(&self, plan: &SendPlan) -> Result<TransactWriteItem> {
        let otp = &plan.otp;
        let key = Key::destination(&otp.account_sid, &otp.delivery.to);
        let mut expr = Expr::default()
            .alias("#svc", &service_attr(&otp.service))
            .name(attr::TTL)
            .value(":entry", to_value(&DestinationEntry::from(&plan.destination))?)
            .value(":ttl", n(destination_ttl(&plan.destination)));
        let mut set = vec!["#svc = :entry", "#ttl = :ttl"];
        let mut conditions = vec![match &plan.expected_current {
            Some(current) => {
                expr = expr.name(attr::CURRENT).value(":expected", s(current));
                "#svc.#current = :expected"
            }
            None => "attribute_not_exists(#svc)",
        }];
        let counted = |e: Expr| e.name(attr::COUNT).name(attr::WINDOW_END_MS).value(":one", n(1));
        match self.default_counter(plan)? {
            Some(CounterOp::Open { window_end_ms, now_ms, .. }) => {
                set.extend(["#count = :one", "#window_end_ms = :end"]);
                conditions.push("(attribute_not_exists(#window_end_ms) OR #window_end_ms <= :now)");
                expr = counted(expr).value(":end", n(*window_end_ms)).value(":now", n(*now_ms));
            }
            Some(CounterOp::Increment { window_end_ms, max, .. }) => {
                set.push("#count = #count + :one");
                conditions.push("#window_end_ms = :end AND #count < :max");
                expr = counted(expr).value(":end", n(*window_end_ms)).value(":max", n(*max));
            }
            None => {}
        }
        self.update(&key, &format!("SET {}", set.join(", ")), Some(&conditions.join(" AND ")), expr)
    }

    /// The send's default-limit counter op: it lives in the send's own destination item.
    fn default_counter<'p>(&self, plan: &'p SendPlan) -> Result<Option<&'p CounterOp>> {
        let home = Key::destination(&plan.otp.account_sid, &plan.otp.delivery.to);
        let mut ops = plan.counters.iter().filter(|op| op.key().is_default());
        let op = ops.next();
        if ops.next().is_some() || op.is_some_and(|op| Key::counter_home(op.key()) != home) {
            tracing::error!("a default-limit counter that is not the send's destination's");
            return Err(Error::Internal);
        }
        Ok(op)
    }

    /// The reverse of `commit_items`, each part conditioned on still being what the send wrote.
    /// A part is a list of alternatives, tried in order while the one before fails its
    /// condition: the destination item's pointer and counter are undone together, else the
    /// pointer alone, else the counter alone (one item: one operation per transaction).
    fn undo_items(&self, plan: &SendPlan) -> Result<Vec<Vec<TransactWriteItem>>> {
        let otp = &plan.otp;
        let acct = &otp.account_sid;
        let mut tx = Vec::with_capacity(6 + plan.counters.len());
        // First, and never dropped: while the OTP is there the commit is applied and not undone.
        tx.push(vec![self.delete(&Key::otp(acct, &otp.sid), Some("attribute_exists(pk)"), Expr::default())?]);

        if let Some(r) = &plan.idempotency {
            tx.push(vec![self.delete(
                &Key::idempotency(acct, &r.key),
                Some("#otp_sid = :sid"),
                Expr::default().name(attr::OTP_SID).value(":sid", s(&otp.sid)),
            )?]);
        }

        // The pointer goes back to the OTP it pointed at (without guard data, as the memory
        // store does), or away, but only while it still points at this send's OTP.
        let dkey = Key::destination(acct, &otp.delivery.to);
        let pointer_expr = || {
            let e = Expr::default()
                .alias("#svc", &service_attr(&otp.service))
                .name(attr::CURRENT)
                .value(":new", s(&otp.sid));
            match &plan.supersede {
                Some(old) => e.name(attr::PREVIOUS_SID).name(attr::PREVIOUS_CANCEL_AT_MS).value(":old", s(&old.sid)),
                None => e,
            }
        };
        let pointer = match &plan.supersede {
            Some(_) => "SET #svc.#current = :old REMOVE #svc.#previous_sid, #svc.#previous_cancel_at_ms",
            None => "REMOVE #svc",
        };
        const POINTER_IS_OURS: &str = "#svc.#current = :new";
        const COUNTER_IS_OURS: &str = "#window_end_ms = :end AND #count > :zero";
        let counter_expr = |e: Expr, end: Millis| {
            e.name(attr::COUNT)
                .name(attr::WINDOW_END_MS)
                .value(":minus_one", n(-1))
                .value(":end", n(end))
                .value(":zero", n(0))
        };
        tx.push(match self.default_counter(plan)? {
            Some(op) => vec![
                self.update(
                    &dkey,
                    &format!("{pointer} ADD #count :minus_one"),
                    Some(&format!("{POINTER_IS_OURS} AND {COUNTER_IS_OURS}")),
                    counter_expr(pointer_expr(), op.window_end_ms()),
                )?,
                self.update(&dkey, pointer, Some(POINTER_IS_OURS), pointer_expr())?,
                self.update(
                    &dkey,
                    "ADD #count :minus_one",
                    Some(COUNTER_IS_OURS),
                    counter_expr(Expr::default(), op.window_end_ms()),
                )?,
            ],
            None => vec![self.update(&dkey, pointer, Some(POINTER_IS_OURS), pointer_expr())?],
        });

        if let Some(old) = &plan.supersede {
            tx.push(vec![self.update(
                &Key::otp(acct, &old.sid),
                "REMOVE #cancel_at_ms",
                Some("#cancel_at_ms = :t"),
                Expr::default().name(attr::CANCEL_AT_MS).value(":t", n(old.cancel_at_ms)),
            )?]);
        }

        for op in plan.counters.iter().filter(|op| !op.key().is_default()) {
            tx.push(vec![self.update(
                &Key::counter(op.key()),
                "ADD #count :minus_one",
                Some(COUNTER_IS_OURS),
                counter_expr(Expr::default(), op.window_end_ms()),
            )?]);
        }

        tx.extend(self.usage_updates(&plan.usage, usage_item(&otp.sid), -1)?.into_iter().map(|u| vec![u]));

        // The send's count taken back, with the OTP's delete (so once, and only if undone).
        // Unconditional: the stream may not have counted the send yet (its `+1` comes after,
        // maybe in another shard; the window's sum is right either way).
        for g in &plan.guard {
            tx.push(vec![self.update(
                &Key::guard(g),
                "ADD #sends :minus_one SET #ttl = :ttl",
                None,
                Expr::default()
                    .name(attr::SENDS)
                    .name(attr::TTL)
                    .value(":minus_one", n(-1))
                    .value(":ttl", n(guard_ttl(g))),
            )?]);
        }
        Ok(tx)
    }

    /// A right code (the wrong-code count refused it): the OTP verified, only if it is still
    /// pending with attempts left. One conditional write: the pumping guard counts a guarded
    /// OTP's verify off the table's stream.
    async fn verify_right_code(&self, key: &Key, code_hash: &[u8], check: &Check, now: Millis) -> Result<VerifyWrite> {
        let expr = with_check(pending_at(now), &Check { valid: true, ..check.clone() })?
            .name(attr::UPDATED_MS)
            .name(attr::ATTEMPTS)
            .name(attr::CODE_HASH)
            .value(":success", s(OtpStatus::Success.as_str()))
            .value(":max", n(MAX_ATTEMPTS))
            .value(":hash", AttributeValue::B(code_hash.to_vec().into()));
        let written = self
            .update_otp_or_old(
                "UpdateItem(verify)",
                key,
                VERIFIED_UPDATE,
                &format!("attribute_exists(pk) AND {PENDING_AT_NOW} AND #attempts < :max AND #code_hash = :hash"),
                expr,
            )
            .await?;
        Ok(match written {
            None => VerifyWrite::Verified,
            Some(old) => VerifyWrite::Refused(old),
        })
    }

    /// One conditional `UpdateItem` of an OTP that answers the item as it was when the
    /// condition fails (`ALL_OLD`), so a refusal costs no second read. `Ok(None)` = written.
    async fn update_otp_or_old(
        &self,
        op: &'static str,
        key: &Key,
        update: &str,
        condition: &str,
        expr: Expr,
    ) -> Result<Option<Option<Otp>>> {
        Ok(self.update_otp_answering(op, key, update, condition, expr, false).await?.err())
    }

    /// `update_otp_or_old` that answers `Ok(item)` when written: the item as written
    /// (`ALL_NEW`, with `new`; None without), or `Err(item as it was)` when refused.
    async fn update_otp_answering(
        &self,
        op: &'static str,
        key: &Key,
        update: &str,
        condition: &str,
        expr: Expr,
        new: bool,
    ) -> Result<Result<Option<Otp>, Option<Otp>>> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.to_item()))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .set_return_values(new.then_some(ReturnValue::AllNew))
            .send()
            .await;
        match result {
            Ok(out) => Ok(Ok(out.attributes.map(from_item::<OtpItem, _>).transpose()?)),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => match c.item() {
                    Some(item) => Ok(Err(Some(from_item::<OtpItem, _>(item.clone())?))),
                    None => Ok(Err(None)),
                },
                Some(UpdateItemError::TransactionConflictException(_)) => Err(Error::Contended),
                _ => Err(errors::sdk(op, &e)),
            },
        }
    }

    /// Count a wrong code in its destination's failure streak: one more, from 1 again when the
    /// last failure is a day old. Only an existing destination item is written (a missing one
    /// went with its OTPs' TTL: nothing to hold against).
    async fn count_failure(&self, account_sid: &str, to: &str, now: Millis) -> Result<()> {
        let key = Key::destination(account_sid, to);
        for fresh in [false, true] {
            let (update, condition) = if fresh {
                ("SET #fails = :one, #fails_at = :now", "attribute_exists(pk)")
            } else {
                (
                    "ADD #fails :one SET #fails_at = :now",
                    "attribute_exists(pk) AND (attribute_not_exists(#fails_at) OR #fails_at > :kept)",
                )
            };
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key.to_item()))
                .update_expression(update)
                .condition_expression(condition)
                .expression_attribute_names("#fails", attr::FAILS)
                .expression_attribute_names("#fails_at", attr::FAILS_AT)
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":now", n(now));
            if !fresh {
                request = request.expression_attribute_values(":kept", n(now - FAILURES_KEPT_MS));
            }
            let result = request.send().await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(_)) => continue,
                    Some(UpdateItemError::TransactionConflictException(_)) => return Err(Error::Contended),
                    _ => return Err(errors::sdk("UpdateItem(destination_failure)", &e)),
                },
            }
        }
        Ok(())
    }

    /// `count_failure` once a wrong code is counted on its OTP: that count stands whatever
    /// happens here (a retry of the compare would count the guess twice), so a conflict is
    /// tried again a few times and a failure is logged, the streak short of one at worst.
    async fn count_failure_after(&self, account_sid: &str, to: Option<&str>, now: Millis) {
        let Some(to) = to else { return };
        for round in 0..3 {
            match self.count_failure(account_sid, to, now).await {
                Ok(()) => return,
                Err(Error::Contended) if round < 2 => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "a wrong code not counted in its destination's failed verifies");
                    return;
                }
            }
        }
    }

    /// Forget the destination's failure streak (only an existing item); whether it had one.
    async fn reset_failures(&self, account_sid: &str, to: &str) -> Result<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Key::destination(account_sid, to).to_item()))
            .update_expression("REMOVE #fails, #fails_at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#fails", attr::FAILS)
            .expression_attribute_names("#fails_at", attr::FAILS_AT)
            .return_values(ReturnValue::UpdatedOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out.attributes.is_some_and(|a| a.contains_key(attr::FAILS))),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(false),
                Some(UpdateItemError::TransactionConflictException(_)) => Err(Error::Contended),
                _ => Err(errors::sdk("UpdateItem(destination_reset)", &e)),
            },
        }
    }
}

#[async_trait]
impl OtpStore for DynamoStore {
    fn otp_shards(&self) -> usize {
        self.otp_shards
    }

    async fn snapshot(&self, r: &SnapshotRequest<'_>) -> Result<SendSnapshot> {
        let dkey = Key::destination(r.account_sid, r.to);
        let lkeys: Vec<Key> = r.limit_names.iter().map(|name| LimitDef::by_name(r.account_sid, name)).collect();
        let ckeys: Vec<Key> = r.counters.iter().map(Key::counter_home).collect();
        let ikey = r.idempotency_key.map(|k| Key::idempotency(r.account_sid, k));
        let all: Vec<Key> = std::iter::once(dkey.clone())
            .chain(lkeys.iter().cloned())
            .chain(ckeys.iter().cloned())
            .chain(ikey.iter().cloned())
            .collect();
        // The guard's window beside the rest (its own eventually consistent request, when this
        // process's copy is stale): no round trip after the snapshot's.
        let (found, guard) = tokio::try_join!(self.batch_get(&all), self.guard_window(r.guard))?;
        let get = |k: &Key| found.get(k).cloned();
        Ok(SendSnapshot {
            destination: get(&dkey).map(|item| destination_of(&item, r.service)).transpose()?.flatten(),
            failures: get(&dkey).map(|item| failures_of(&item)).transpose()?.unwrap_or_default(),
            limits: lkeys.iter().map(|k| get(k).map(from_item::<LimitItem, _>).transpose()).collect::<Result<_>>()?,
            counters: ckeys
                .iter()
                .map(|k| Ok(get(k).map(|item| counter_of(&item)).transpose()?.flatten()))
                .collect::<Result<_>>()?,
            idempotency: ikey.as_ref().and_then(get).map(from_item::<IdempotencyItem, _>).transpose()?,
            guard,
        })
    }

    async fn get_counters(&self, keys: &[CounterKey]) -> Result<Vec<Option<Counter>>> {
        let keys: Vec<Key> = keys.iter().map(Key::counter_home).collect();
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let found = self.batch_get(&keys).await?;
        keys.iter().map(|k| Ok(found.get(k).map(counter_of).transpose()?.flatten())).collect()
    }

    async fn commit_send(&self, plan: &SendPlan) -> Result<()> {
        let items = self.commit_items(plan)?;
        // A fresh token per commit attempt: a re-planned attempt is a different transaction.
        let token = Some(crate::domain::ids::new_sid(""));
        Ok(self.transact_with_token("TransactWriteItems(commit_send)", items, token).await?)
    }

    async fn undo_send(&self, plan: &SendPlan) -> Result<()> {
        self.undo_send_items(plan).await?;
        // The stream counted (or will count) its send in insights: take it back.
        self.take_back_send(&plan.otp).await;
        Ok(())
    }

    async fn update_event(&self, otp: &Otp, index: usize, event: &ChannelEvent, lookup: Lookup) -> Result<()> {
        let update = async {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Key::otp(&otp.account_sid, &otp.sid).to_item()))
                .update_expression(format!("SET #events[{index}] = :event"))
                .condition_expression("attribute_exists(pk) AND size(#events) > :index")
                .expression_attribute_names("#events", attr::EVENTS)
                .expression_attribute_values(":event", to_value(&EventItem::from(event))?)
                .expression_attribute_values(":index", n(index))
                .send()
                .await
                .map(drop)
                .map_err(|e| match e.as_service_error() {
                    Some(
                        UpdateItemError::ConditionalCheckFailedException(_)
                        | UpdateItemError::TransactionConflictException(_),
                    ) => Error::Contended,
                    _ => errors::sdk("UpdateItem(event)", &e),
                })
        };
        // The provider's message id gets its own lookup item (`MSG#{id}`), so a receipt finds
        // this event whatever the OTP's other dispatches (a workflow's OTP has several). A test
        // destination's "test" is no message id (and would make one hot key). A provider whose
        // receipts carry the OTP and event themselves needs none (`Lookup::None`); a provider
        // of the account's own gets the account's (`MSG#{account}#{id}`), so the id it answers
        // cannot take over a lookup of another account's or of the deployment's routes.
        let Some(provider_id) = event.target_sid.as_deref().filter(|id| *id != TEST_PROVIDER_ID) else {
            return update.await;
        };
        let key = match lookup {
            Lookup::None => return update.await,
            Lookup::Deployment => Key::message(provider_id),
            Lookup::Account => Key::account_message(&otp.account_sid, provider_id),
        };
        // Two plain writes at once rather than a transaction (which would cost twice the units
        // of both items): each is right on its own. A lookup whose event update failed points
        // at an event that is not `sent` with this id, so a receipt for it changes nothing
        // (the receipt's update is conditional on exactly that) and it goes with the OTP's TTL.
        // The put is unconditional: the id is the provider's, one per dispatch, so writing it
        // again (an SDK retry after a lost answer) writes the same item, where a conditional
        // put would turn that retry into a failure.
        let lookup = async {
            let item = to_item(&MessageItem::new(key, otp, index as u32))?;
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .send()
                .await
                .map(drop)
                .map_err(|e| errors::sdk("PutItem(message)", &e))
        };
        tokio::try_join!(update, lookup).map(drop)
    }

    async fn get_otp(&self, account_sid: &str, otp_sid: &str) -> Result<Option<Otp>> {
        self.get("GetItem(otp)", &Key::otp(account_sid, otp_sid), true).await?.map(from_item::<OtpItem, _>).transpose()
    }

    async fn get_destination(&self, account_sid: &str, service: &str, to: &str) -> Result<Option<Destination>> {
        let item = self.get("GetItem(destination)", &Key::destination(account_sid, to), true).await?;
        Ok(item.map(|item| destination_of(&item, service)).transpose()?.flatten())
    }

    async fn verify_code(
        &self,
        account_sid: &str,
        otp_sid: &str,
        code_hashes: &[Vec<u8>],
        check: &Check,
        now: Millis,
    ) -> Result<VerifyWrite> {
        // A wrong code is compared only by a write that counts it: the first write counts the
        // code if it is not the OTP's (`<> :hash`), so concurrent guesses each take an attempt
        // as they are compared, and a right code (refused by that write, uncounted) is then
        // verified only while attempts are left. The last attempt is its own write, since it
        // also fails the OTP (an update cannot set a status only when a sum reaches a bound).
        let key = Key::otp(account_sid, otp_sid);
        let wrong = Check { valid: false, ..check.clone() };
        // Wrong under every key of the ring: the hash is none of the code's candidate hashes.
        let not_any =
            (0..code_hashes.len()).map(|i| format!("#code_hash <> :hash{i}")).collect::<Vec<_>>().join(" AND ");
        let counted = |last: bool| -> Result<Expr> {
            let mut expr = with_check(pending_at(now), &wrong)?
                .name(attr::ATTEMPTS)
                .name(attr::CODE_HASH)
                .value(":one", n(1))
                .value(":last", n(MAX_ATTEMPTS - 1));
            for (i, h) in code_hashes.iter().enumerate() {
                expr = expr.value(&format!(":hash{i}"), AttributeValue::B(h.clone().into()));
            }
            Ok(if last { expr.name(attr::UPDATED_MS).value(":failed", s(OtpStatus::Failed.as_str())) } else { expr })
        };
        for _ in 0..MAX_ATTEMPTS + 1 {
            let written = self
                .update_otp_answering(
                    "UpdateItem(wrong_code)",
                    &key,
                    COUNT_WRONG,
                    &format!("attribute_exists(pk) AND {PENDING_AT_NOW} AND #attempts < :last AND {not_any}"),
                    counted(false)?,
                    true,
                )
                .await?;
            let otp = match written {
                Ok(otp) => {
                    self.count_failure_after(account_sid, otp.as_ref().map(|o| o.delivery.to.as_str()), now).await;
                    return Ok(VerifyWrite::Wrong { failed: false });
                }
                Err(None) => return Ok(VerifyWrite::Refused(None)),
                Err(Some(otp)) => otp,
            };
            if otp.status_at(now) != OtpStatus::Pending || otp.attempts >= MAX_ATTEMPTS {
                return Ok(VerifyWrite::Refused(Some(otp)));
            }
            if let Some(code_hash) = code_hashes.iter().find(|h| crate::domain::crypto::ct_eq(&otp.code_hash, h)) {
                let verified = self.verify_right_code(&key, code_hash, check, now).await?;
                // The streak is cleared only where there may be one: no write for an OTP whose
                // destination had no failures when it was sent and that took no wrong code.
                if matches!(verified, VerifyWrite::Verified) && (otp.clears_failures || otp.attempts > 0) {
                    // The OTP is verified: a failure here must not turn that into an error (a
                    // retry would find it verified and answer 471). The streak stays, at worst.
                    if let Err(e) = self.reset_failures(account_sid, &otp.delivery.to).await {
                        tracing::warn!(otp = %otp_sid, error = %e, "destination's failed verifies not cleared");
                    }
                }
                return Ok(verified);
            }
            // A wrong code on the last attempt (as the refusal showed it): count it and fail
            // the OTP, only if that attempt is still the last one; else look again.
            let written = self
                .update_otp_or_old(
                    "UpdateItem(last_wrong_code)",
                    &key,
                    &format!("{COUNT_WRONG}, #status = :failed, #updated_ms = :now {LEAVE_DUE_INDEX}"),
                    &format!("attribute_exists(pk) AND {PENDING_AT_NOW} AND #attempts = :last AND {not_any}"),
                    counted(true)?,
                )
                .await?;
            if written.is_none() {
                self.count_failure_after(account_sid, Some(&otp.delivery.to), now).await;
                return Ok(VerifyWrite::Wrong { failed: true });
            }
        }
        Err(Error::Contended)
    }

    async fn clear_failures(&self, account_sid: &str, to: &str) -> Result<bool> {
        self.reset_failures(account_sid, to).await
    }

    async fn claim_step(
        &self,
        account_sid: &str,
        otp_sid: &str,
        step: u32,
        event: &ChannelEvent,
        usage: &[UsageKey],
        now: Millis,
    ) -> Result<bool> {
        // One transaction: the OTP's conditional update and the step's usage counters.
        let expr = pending_at(now)
            .name(attr::EVENTS)
            .name(attr::WORKFLOW)
            .name(attr::SENT)
            .value(":event", AttributeValue::L(vec![to_value(&EventItem::from(event))?]))
            .value(":step", n(step))
            .value(":next", n(step + 1));
        let mut tx = vec![self.update(
            &Key::otp(account_sid, otp_sid),
            "SET #events = list_append(#events, :event), #workflow.#sent = :next",
            Some(&format!("attribute_exists(pk) AND {PENDING_AT_NOW} AND #workflow.#sent = :step")),
            expr,
        )?];
        tx.extend(self.usage_updates(usage, usage_item(otp_sid), 1)?);
        match self.transact("TransactWriteItems(claim_step)", tx).await {
            Ok(()) => Ok(true),
            Err(TransactError::Canceled(reasons)) if reasons.first() == Some(&Reason::ConditionFailed) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn cancel_otp(&self, account_sid: &str, otp_sid: &str, now: Millis) -> Result<CancelWrite> {
        let expr = pending_at(now).name(attr::UPDATED_MS).value(":canceled", s(OtpStatus::Canceled.as_str()));
        let written = self
            .update_otp_or_old(
                "UpdateItem(cancel)",
                &Key::otp(account_sid, otp_sid),
                "SET #status = :canceled, #updated_ms = :now REMOVE gsi2pk, gsi2sk",
                PENDING_AT_NOW,
                expr,
            )
            .await?;
        Ok(match written {
            None => CancelWrite::Canceled,
            Some(old) => CancelWrite::Refused(old),
        })
    }
}

impl DynamoStore {
    /// A send's items taken back, each part only if it is still what the send wrote.
    async fn undo_send_items(&self, plan: &SendPlan) -> Result<()> {
        // Like the memory store, each part is undone only if it is still what the send wrote;
        // a transaction fails whole, so parts whose condition fails are dropped and the rest
        // is tried again.
        let mut parts = self.undo_items(plan)?;
        for round in 0..MAX_UNDO_ROUNDS {
            if parts.is_empty() {
                return Ok(());
            }
            let items: Vec<TransactWriteItem> = parts.iter().map(|alternatives| alternatives[0].clone()).collect();
            match self.transact("TransactWriteItems(undo_send)", items).await {
                Ok(()) => return Ok(()),
                Err(TransactError::Canceled(reasons)) if reasons.first() == Some(&Reason::ConditionFailed) => {
                    return Err(Error::NotFound)
                }
                Err(TransactError::Canceled(reasons)) => match canceled(&reasons) {
                    Error::Contended => {
                        let failed = reasons.iter().filter(|r| **r == Reason::ConditionFailed).count();
                        for (alternatives, reason) in parts.iter_mut().zip(&reasons) {
                            if *reason == Reason::ConditionFailed {
                                alternatives.remove(0);
                            }
                        }
                        parts.retain(|alternatives| !alternatives.is_empty());
                        if failed == 0 {
                            // Only conflicts with concurrent transactions: same items again.
                            backoff(round + 1).await;
                        }
                    }
                    e => return Err(e),
                },
                Err(TransactError::Other(e)) => return Err(e),
            }
        }
        Err(Error::Unavailable)
    }
}
