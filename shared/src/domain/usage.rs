//! Usage counters: per account, UTC day and category, written with the send that causes them.

use super::otp::Channel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageCategory {
    /// OTPs created, whatever the channel or retries.
    All,
    /// Messages dispatched on a channel (retries and workflow steps included).
    Channel(Channel),
    /// OTPs sent to an account's test destinations: nothing delivered, nothing billed (and not
    /// in `All` or a channel).
    Test,
}

impl UsageCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageCategory::All => "All",
            UsageCategory::Channel(c) => c.as_str(),
            UsageCategory::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("all") {
            Some(UsageCategory::All)
        } else if s.eq_ignore_ascii_case("test") {
            Some(UsageCategory::Test)
        } else {
            Channel::parse_any(s).map(UsageCategory::Channel)
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
