//! The table itself, for tests and local bootstrapping (deployments get it from template.yaml,
//! with the same keys, index and TTL).

use std::time::Duration;

use aws_sdk_dynamodb::{
    operation::create_table::CreateTableError,
    types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
        ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification,
        TimeToLiveStatus,
    },
    Client,
};

use aws_smithy_types::error::display::DisplayErrorContext;

use super::build_error;
use crate::domain::error::{Error, Result};

/// The account directory (account items only).
pub const GSI1: &str = "gsi1";
/// Sparse: OTPs stored pending, by deadline (the expiry sweeper).
pub const GSI2: &str = "gsi2";
pub const TTL_ATTRIBUTE: &str = "ttl";

/// How long to wait for a new table to become ACTIVE.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement> {
    KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(build_error)
}

fn string_attribute(name: &str) -> Result<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(build_error)
}

fn unavailable(what: &'static str) -> impl FnOnce(String) -> Error {
    move |detail| {
        tracing::error!(what, detail, "table setup failed");
        Error::Unavailable
    }
}

fn include(attributes: &[&str]) -> Projection {
    attributes
        .iter()
        .fold(Projection::builder().projection_type(ProjectionType::Include), |p, a| p.non_key_attributes(*a))
        .build()
}

/// Create the table `name` (pay per request; keys `pk`/`sk`; GSI `gsi1` on `gsi1pk`/`gsi1sk`
/// projecting everything (accounts) and the sparse `gsi2` (pending OTPs by deadline); a stream
/// of new and old images), wait until it is active, then turn TTL on for `ttl`. OTP search
/// needs no index: an account's OTPs are one partition sorted by sid, which starts with the
/// creation time. An existing table is left as it is (TTL is still ensured), so this can run
/// at every local start. template.yaml declares the same.
pub async fn create_table(client: &Client, name: &str) -> Result<()> {
    create(client, name, false).await
}

/// `create_table` with the stream on, as deployed. Only where the stream is read: moto copies
/// the whole table, stream records included, at every transaction, which makes the
/// concurrency tests crawl.
pub async fn create_table_with_stream(client: &Client, name: &str) -> Result<()> {
    create(client, name, true).await
}

async fn create(client: &Client, name: &str, with_stream: bool) -> Result<()> {
    let gsi = GlobalSecondaryIndex::builder()
        .index_name(GSI1)
        .key_schema(key("gsi1pk", KeyType::Hash)?)
        .key_schema(key("gsi1sk", KeyType::Range)?)
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .map_err(build_error)?;
    let due = GlobalSecondaryIndex::builder()
        .index_name(GSI2)
        .key_schema(key("gsi2pk", KeyType::Hash)?)
        .key_schema(key("gsi2sk", KeyType::Range)?)
        .projection(include(&["account_sid", "sid"]))
        .build()
        .map_err(build_error)?;
    let stream = StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()
        .map_err(build_error)?;
    let created = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute("pk")?)
        .attribute_definitions(string_attribute("sk")?)
        .attribute_definitions(string_attribute("gsi1pk")?)
        .attribute_definitions(string_attribute("gsi1sk")?)
        .attribute_definitions(string_attribute("gsi2pk")?)
        .attribute_definitions(string_attribute("gsi2sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(gsi)
        .global_secondary_indexes(due)
        .set_stream_specification(with_stream.then_some(stream))
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) if matches!(e.as_service_error(), Some(CreateTableError::ResourceInUseException(_))) => {}
        Err(e) => return Err(unavailable("CreateTable")(DisplayErrorContext(&e).to_string())),
    }

    let deadline = tokio::time::Instant::now() + ACTIVE_TIMEOUT;
    loop {
        let described = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| unavailable("DescribeTable")(DisplayErrorContext(&e).to_string()))?;
        let status = described.table().and_then(|t| t.table_status()).cloned();
        if status == Some(TableStatus::Active) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(unavailable("DescribeTable")(format!("table not active: {status:?}")));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let ttl = client
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|e| unavailable("DescribeTimeToLive")(DisplayErrorContext(&e).to_string()))?;
    let enabled = ttl
        .time_to_live_description()
        .and_then(|d| d.time_to_live_status())
        .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
    if !enabled {
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(TTL_ATTRIBUTE)
            .enabled(true)
            .build()
            .map_err(build_error)?;
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| unavailable("UpdateTimeToLive")(DisplayErrorContext(&e).to_string()))?;
    }
    Ok(())
}
