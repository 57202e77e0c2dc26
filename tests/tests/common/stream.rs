//! A table's stream on moto read as Lambda would hand it on: the records not read yet, as one
//! DynamoDB event batch (JSON), for the handlers that consume the stream (the callbacks worker,
//! the pumping guard's counting). Raw DynamoDB Streams calls (JSON protocol; moto does not check
//! signatures).

use std::collections::HashMap;

use serde_json::{json, Value};

pub struct StreamTail {
    arn: String,
    /// Per shard, the last sequence number read; held through a read, so concurrent readers
    /// each get records the others did not (as Lambda hands each record to one batch).
    read: tokio::sync::Mutex<HashMap<String, String>>,
}

impl StreamTail {
    /// The stream of `table` (created with `create_table_with_stream`), from its start.
    pub async fn of(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Self {
        let arn = ddb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .expect("describe table")
            .table
            .and_then(|t| t.latest_stream_arn)
            .expect("the table has a stream");
        StreamTail { arn, read: Default::default() }
    }

    /// Every record not read yet, as a Lambda DynamoDB event (`{"Records": [...]}`).
    pub async fn next_batch(&self) -> Value {
        let mut read = self.read.lock().await;
        let described = streams("DescribeStream", json!({ "StreamArn": self.arn })).await;
        let mut records = vec![];
        for shard in described["StreamDescription"]["Shards"].as_array().expect("shards") {
            let id = shard["ShardId"].as_str().expect("shard id").to_owned();
            let after = read.get(&id).cloned();
            let mut ask = json!({ "StreamArn": self.arn, "ShardId": id, "ShardIteratorType": "TRIM_HORIZON" });
            if let Some(seq) = &after {
                ask["ShardIteratorType"] = json!("AFTER_SEQUENCE_NUMBER");
                ask["SequenceNumber"] = json!(seq);
            }
            let mut iterator = streams("GetShardIterator", ask).await["ShardIterator"].clone();
            loop {
                let page = streams("GetRecords", json!({ "ShardIterator": iterator })).await;
                let got = page["Records"].as_array().cloned().unwrap_or_default();
                let Some(last) = got.last() else { break };
                let seq = last["dynamodb"]["SequenceNumber"].as_str().expect("sequence number").to_owned();
                read.insert(id.clone(), seq);
                records.extend(got);
                iterator = page["NextShardIterator"].clone();
            }
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let records: Vec<Value> = records
            .into_iter()
            .map(|mut r| {
                // DynamoDB (and so Lambda) gives epoch seconds here; moto an ISO date.
                r["dynamodb"]["ApproximateCreationDateTime"] = json!(now);
                r["eventSourceARN"] = json!(self.arn);
                r
            })
            .collect();
        json!({ "Records": records })
    }
}

/// A raw DynamoDB Streams call to moto.
pub async fn streams(target: &str, body: Value) -> Value {
    let url = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL must point at moto");
    let r = reqwest::Client::new()
        .post(url)
        .header("X-Amz-Target", format!("DynamoDBStreams_20120810.{target}"))
        .header("Content-Type", "application/x-amz-json-1.0")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .expect("moto streams");
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{target}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}
