//! The table's stream images (DynamoDB Streams, `NEW_AND_OLD_IMAGES`) read back as domain
//! OTPs, through the same item struct as every read, so the stream and the table agree.

use super::items::{from_item, to_item, OtpItem, OTP_PREFIX};
use crate::domain::{error::Result, otp::Otp};

/// The OTP of a stream image; None for an image of another kind of item (or none at all).
pub fn otp_from_image(image: serde_dynamo::Item) -> Result<Option<Otp>> {
    let attrs: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> = image.into();
    let is_otp = attrs.get("pk").and_then(|v| v.as_s().ok()).is_some_and(|pk| pk.starts_with(OTP_PREFIX));
    if !is_otp {
        return Ok(None);
    }
    from_item::<OtpItem, Otp>(attrs).map(Some)
}

/// Whether an OTP image says if the pumping guard counts it (`guarded`): an OTP put by a
/// version before the stream counted sends has no say, and its send was counted where it was
/// sent (its verify is counted as `Otp::guarded` reads it).
pub fn says_guarded(image: &serde_dynamo::Item) -> bool {
    let attrs: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> = image.clone().into();
    attrs.contains_key("guarded")
}

/// The item a send puts for `otp` (the inverse of `otp_from_image`), for loading OTPs in bulk
/// (`BatchWriteItem`) where a send's transaction per OTP would be too slow: tests at scale.
pub fn otp_item(otp: &Otp) -> Result<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    to_item(&OtpItem::from(otp))
}
