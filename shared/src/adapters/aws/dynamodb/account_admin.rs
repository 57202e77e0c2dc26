//! The admin command's account changes on DynamoDB (`ports::AccountAdminStore`;
//! docs/data-model.md, "Account"). Each change is one `TransactWriteItems` over the account
//! item and its copies under its ancestors, each conditional, so the copies never disagree.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{
    errors::{self, Reason},
    items::{from_item, AccountItem, Key, ACCOUNTS_GSI1PK},
    s,
    table::GSI1,
    DynamoStore, Expr, TransactError,
};
use crate::{
    domain::{
        account::Account,
        cidr::Cidr,
        error::{Error, Result},
    },
    ports::{AccountAdminStore, AccountStore},
};

impl DynamoStore {
    /// `update` on the account and each of its copies, all or none, each only if `condition`
    /// holds; a failed condition is `refused`.
    async fn change_account(
        &self,
        op: &'static str,
        account: &Account,
        update: &str,
        condition: &str,
        expr: Expr,
        refused: Error,
    ) -> Result<()> {
        let keys = std::iter::once(Key::account(&account.sid))
            .chain(account.ancestors.iter().map(|a| Key::sub_account(a, &account.sid)));
        let tx = keys.map(|k| self.update(&k, update, Some(condition), expr.clone())).collect::<Result<Vec<_>>>()?;
        let result = self.transact(op, tx).await;
        // This process sees its own change at once; others within `ACCOUNT_CACHE_TTL`.
        self.accounts.forget(&account.sid);
        match result {
            Ok(()) => Ok(()),
            Err(TransactError::Canceled(reasons)) if reasons.contains(&Reason::ConditionFailed) => Err(refused),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl AccountAdminStore for DynamoStore {
    async fn list_accounts(&self) -> Result<Vec<Account>> {
        // The accounts' own items carry `gsi1pk = ACCOUNTS`: one partition of the index, in
        // creation order. (Eventually consistent: an account made a moment ago may be missing.)
        let mut accounts = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI1)
                .key_condition_expression("#gsi1pk = :gsi1pk")
                .expression_attribute_names("#gsi1pk", "gsi1pk")
                .expression_attribute_values(":gsi1pk", s(ACCOUNTS_GSI1PK))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| errors::sdk("Query(accounts)", &e))?;
            for item in out.items.unwrap_or_default() {
                accounts.push(from_item::<AccountItem, Account>(item)?);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(accounts),
            }
        }
    }

    async fn set_suspended(&self, account: &Account, suspended: bool) -> Result<()> {
        let expr = Expr::default().name("suspended").value(":suspended", AttributeValue::Bool(suspended));
        self.change_account(
            "TransactWriteItems(set_suspended)",
            account,
            "SET #suspended = :suspended",
            "attribute_exists(pk)",
            expr,
            Error::NotFound,
        )
        .await
    }

    async fn replace_token_hash(&self, account: &Account, token_hash: &[u8]) -> Result<()> {
        let expr = Expr::default()
            .name("token_hash")
            .value(":old", AttributeValue::B(account.token_hash.clone().into()))
            .value(":new", AttributeValue::B(token_hash.to_vec().into()));
        let result = self
            .change_account(
                "TransactWriteItems(replace_token_hash)",
                account,
                "SET #token_hash = :new",
                "attribute_exists(pk) AND #token_hash = :old",
                expr,
                Error::Contended,
            )
            .await;
        match result {
            // Gone, or changed meanwhile: which one, the account says.
            Err(Error::Contended) => match self.get_account_fresh(&account.sid).await? {
                None => Err(Error::NotFound),
                Some(_) => Err(Error::Contended),
            },
            other => other,
        }
    }

    async fn set_allowed_ips(&self, account: &Account, allowed: &[Cidr]) -> Result<()> {
        let list = allowed.iter().map(|c| AttributeValue::S(c.to_string())).collect();
        let expr = Expr::default().name("allowed_ips").value(":ips", AttributeValue::L(list));
        self.change_account(
            "TransactWriteItems(set_allowed_ips)",
            account,
            "SET #allowed_ips = :ips",
            "attribute_exists(pk)",
            expr,
            Error::NotFound,
        )
        .await
    }
}
