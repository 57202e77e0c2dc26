//! Usage counters: per account, UTC day and category, written with the send that causes them.

use super::otp::Channel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageCategory {
    /// OTPs created, whatever the channel or retries.
    All,
    /// Messages dispatched on a channel (retries and workflow steps included).
    Channel(Channel),
}

impl UsageCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageCategory::All => "All",
            UsageCategory::Channel(c) => c.as_str(),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("all") {
            Some(UsageCategory::All)
        } else {
            Channel::parse(s).map(UsageCategory::Channel)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageKey {
    pub account_sid: String,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub category: UsageCategory,
}
