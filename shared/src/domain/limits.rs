//! Rate limits: named limits of fixed-window buckets, and the default limit.

use serde_json::{json, Value};

use super::{
    error::{Error, Result},
    time::Millis,
};

pub const MAX_BUCKETS: usize = 10;
pub const MAX_INTERVAL_SECS: u32 = 31_536_000;

/// The default limit, applied when a send names no limits: one OTP per minute per destination.
pub const DEFAULT_LIMIT: &str = "__default__";
pub const DEFAULT_MAX: u32 = 1;
pub const DEFAULT_INTERVAL_SECS: u32 = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    pub max: u32,
    pub interval_secs: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitDef {
    pub sid: String,
    /// The account whose sends the limit applies to (the seeds' `targetAccountSid`).
    pub account_sid: String,
    /// The account that created it (the seeds' `accountSid`).
    pub created_by: String,
    pub name: String,
    pub buckets: Vec<Bucket>,
    /// The buckets as the client gave them, echoed back as a JSON string (seed shape).
    pub buckets_json: String,
    pub description: Option<String>,
    pub created_ms: Millis,
    pub updated_ms: Millis,
}

pub const MAX_NAME_LEN: usize = 64;
pub const MAX_BUCKET_NAME_LEN: usize = 64;

/// A limit name: `[A-Za-z0-9_.-]{1,64}` (it is the key a send names the limit by).
pub fn is_valid_limit_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Buckets as a client gives them: a real JSON array, or a string holding one (the seeds send
/// `"buckets": "[{ \"name\":\"bucket1\", \"max\":\"1\", \"interval\":\"30\"}]"`). Numbers
/// may be numbers or strings. Returns the buckets and the text to echo back: the very string
/// when a string was given, else compact JSON with the numbers as strings (the seed shape).
pub fn parse_buckets(given: &Value) -> Result<(Vec<Bucket>, String)> {
    let (array, echo) = match given {
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => (items, Some(text.clone())),
            Ok(_) => return Err(Error::invalid("buckets", "must be an array of {name, max, interval}")),
            Err(_) => return Err(Error::invalid("buckets", "malformed JSON")),
        },
        Value::Array(items) => (items.clone(), None),
        _ => return Err(Error::invalid("buckets", "must be an array of {name, max, interval}")),
    };
    if array.is_empty() || array.len() > MAX_BUCKETS {
        return Err(Error::invalid("buckets", format!("must hold 1 to {MAX_BUCKETS} buckets")));
    }
    let mut buckets: Vec<Bucket> = Vec::with_capacity(array.len());
    for (i, item) in array.iter().enumerate() {
        let Value::Object(fields) = item else {
            return Err(Error::invalid(format!("buckets[{i}]"), "must be an object {name, max, interval}"));
        };
        let name = match fields.get("name") {
            Some(Value::String(n)) => n.clone(),
            Some(Value::Number(n)) => n.to_string(),
            None | Some(Value::Null) => return Err(Error::missing(format!("buckets[{i}].name"))),
            Some(_) => return Err(Error::invalid(format!("buckets[{i}].name"), "must be a string")),
        };
        let name_len = name.chars().count();
        if name_len == 0 || name_len > MAX_BUCKET_NAME_LEN || name.chars().any(char::is_control) {
            return Err(Error::invalid(
                format!("buckets[{i}].name"),
                format!("must be 1 to {MAX_BUCKET_NAME_LEN} printable characters"),
            ));
        }
        if buckets.iter().any(|b| b.name == name) {
            return Err(Error::invalid(format!("buckets[{i}].name"), format!("duplicate bucket name {name}")));
        }
        let max = whole(fields.get("max"), i, "max", 1, u32::MAX)?;
        let interval_secs = whole(fields.get("interval"), i, "interval", 1, MAX_INTERVAL_SECS)?;
        buckets.push(Bucket { name, max, interval_secs });
    }
    let echo = echo.unwrap_or_else(|| buckets_json(&buckets));
    Ok((buckets, echo))
}

/// A bucket's whole-number field, given as a number or a string.
fn whole(v: Option<&Value>, i: usize, field: &str, min: u32, max: u32) -> Result<u32> {
    let param = || format!("buckets[{i}].{field}");
    let text = match v {
        None | Some(Value::Null) => return Err(Error::missing(param())),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(_) => String::new(),
    };
    match text.parse::<u64>() {
        Ok(n) if (u64::from(min)..=u64::from(max)).contains(&n) => Ok(n as u32),
        _ => Err(Error::invalid(param(), format!("must be a whole number from {min} to {max}"))),
    }
}

/// Compact JSON of buckets with the numbers as strings, as the seeds list them:
/// `[{"name":"bucket1","max":"1","interval":"60"}]`.
pub fn buckets_json(buckets: &[Bucket]) -> String {
    let items: Vec<Value> = buckets
        .iter()
        .map(|b| json!({ "name": b.name, "max": b.max.to_string(), "interval": b.interval_secs.to_string() }))
        .collect();
    Value::Array(items).to_string()
}

/// One counter: sends in the window of one bucket for one key value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    pub account_sid: String,
    /// The limit's sid (so a limit deleted and created again starts from zero), or
    /// `DEFAULT_LIMIT`.
    pub limit: String,
    pub bucket: String,
    pub value: String,
}

impl CounterKey {
    /// The default limit's counter (a send without `limits`).
    pub fn is_default(&self) -> bool {
        self.limit == DEFAULT_LIMIT
    }

    pub fn default_for(account_sid: &str, to: &str) -> Self {
        CounterKey {
            account_sid: account_sid.to_owned(),
            limit: DEFAULT_LIMIT.to_owned(),
            bucket: "per_minute".to_owned(),
            value: to.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub count: u32,
    pub window_end_ms: Millis,
}

/// The write one counter needs for one send; each carries the condition that makes it safe
/// under concurrency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterOp {
    /// No open window: open one at `now` with count 1. Condition: still no open window.
    Open { key: CounterKey, window_end_ms: Millis, now_ms: Millis },
    /// An open window with room: count + 1. Condition: same window, count < max.
    Increment { key: CounterKey, window_end_ms: Millis, max: u32 },
}

impl CounterOp {
    pub fn key(&self) -> &CounterKey {
        match self {
            CounterOp::Open { key, .. } | CounterOp::Increment { key, .. } => key,
        }
    }
    pub fn window_end_ms(&self) -> Millis {
        match self {
            CounterOp::Open { window_end_ms, .. } | CounterOp::Increment { window_end_ms, .. } => *window_end_ms,
        }
    }
}

/// A limit as it applies to one send: its name (for the 454 message) and its counters.
pub struct Admission {
    /// `None` for the default limit (which answers 453).
    pub limit_name: Option<String>,
    pub counters: Vec<(CounterKey, Bucket)>,
}

/// Decide the counter writes of one send from the counters as read. The first full bucket,
/// in the order the limits were named, rejects the send; a rejected send writes nothing.
pub fn plan_counters(now: Millis, admissions: &[Admission], states: &[Option<Counter>]) -> Result<Vec<CounterOp>> {
    let mut ops = Vec::new();
    let mut state = states.iter();
    for admission in admissions {
        for (key, bucket) in &admission.counters {
            let current = state.next().copied().flatten();
            match current {
                Some(c) if c.window_end_ms > now => {
                    if c.count >= bucket.max {
                        return Err(match &admission.limit_name {
                            Some(name) => Error::LimitExceeded(name.clone()),
                            None => Error::TooManyToDestination,
                        });
                    }
                    ops.push(CounterOp::Increment {
                        key: key.clone(),
                        window_end_ms: c.window_end_ms,
                        max: bucket.max,
                    });
                }
                _ => ops.push(CounterOp::Open {
                    key: key.clone(),
                    window_end_ms: now + i64::from(bucket.interval_secs) * 1000,
                    now_ms: now,
                }),
            }
        }
    }
    Ok(ops)
}

/// Counter keys of the named limits for a send, in order, with their buckets.
pub fn admissions(account_sid: &str, named: &[(LimitDef, String)]) -> Vec<Admission> {
    named
        .iter()
        .map(|(def, value)| Admission {
            limit_name: Some(def.name.clone()),
            counters: def
                .buckets
                .iter()
                .map(|b| {
                    let key = CounterKey {
                        account_sid: account_sid.to_owned(),
                        limit: def.sid.clone(),
                        bucket: b.name.clone(),
                        value: value.clone(),
                    };
                    (key, b.clone())
                })
                .collect(),
        })
        .collect()
}

pub fn default_admission(account_sid: &str, to: &str) -> Admission {
    Admission {
        limit_name: None,
        counters: vec![(
            CounterKey::default_for(account_sid, to),
            Bucket { name: "per_minute".into(), max: DEFAULT_MAX, interval_secs: DEFAULT_INTERVAL_SECS },
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(name: &str, buckets: &[(u32, u32)]) -> LimitDef {
        LimitDef {
            sid: format!("LM{name}"),
            account_sid: "AC1".into(),
            created_by: "AC1".into(),
            name: name.into(),
            buckets: buckets
                .iter()
                .enumerate()
                .map(|(i, (max, interval))| Bucket { name: format!("b{i}"), max: *max, interval_secs: *interval })
                .collect(),
            buckets_json: String::new(),
            description: None,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn first_send_opens_a_window_per_bucket() {
        let adm = admissions("AC1", &[(limit("ip", &[(1, 30), (2, 300)]), "127.0.0.1".into())]);
        let ops = plan_counters(1_000, &adm, &[None, None]).unwrap();
        assert_eq!(ops.len(), 2);
        assert!(matches!(ops[0], CounterOp::Open { window_end_ms: 31_000, .. }));
        assert!(matches!(ops[1], CounterOp::Open { window_end_ms: 301_000, .. }));
    }

    #[test]
    fn full_bucket_rejects_naming_its_limit_and_writes_nothing() {
        let adm = admissions(
            "AC1",
            &[(limit("ip", &[(5, 30)]), "1.2.3.4".into()), (limit("phone", &[(1, 30)]), "+1".into())],
        );
        let states =
            [Some(Counter { count: 1, window_end_ms: 5_000 }), Some(Counter { count: 1, window_end_ms: 5_000 })];
        assert_eq!(plan_counters(1_000, &adm, &states), Err(Error::LimitExceeded("phone".into())));
    }

    #[test]
    fn limits_are_checked_in_the_order_given() {
        let full = Some(Counter { count: 9, window_end_ms: 5_000 });
        let adm = admissions("AC1", &[(limit("a", &[(1, 30)]), "x".into()), (limit("b", &[(1, 30)]), "y".into())]);
        assert_eq!(plan_counters(0, &adm, &[full, full]), Err(Error::LimitExceeded("a".into())));
    }

    #[test]
    fn a_window_past_its_end_opens_again() {
        let adm = [default_admission("AC1", "+1")];
        let ops = plan_counters(61_000, &adm, &[Some(Counter { count: 1, window_end_ms: 60_000 })]).unwrap();
        assert!(matches!(ops[0], CounterOp::Open { window_end_ms: 121_000, .. }));
    }

    fn invalid_param(r: Result<(Vec<Bucket>, String)>) -> String {
        match r {
            Err(Error::InvalidParameter { param, .. }) => param.into_owned(),
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn buckets_given_as_a_string_are_echoed_exactly() {
        let text =
            r#"[{ "name":"bucket1", "max":"1", "interval":"30"},{ "name":"bucket2", "max":"2", "interval":"300"}]"#;
        let (buckets, echo) = parse_buckets(&Value::String(text.into())).unwrap();
        assert_eq!(echo, text);
        assert_eq!(
            buckets,
            vec![
                Bucket { name: "bucket1".into(), max: 1, interval_secs: 30 },
                Bucket { name: "bucket2".into(), max: 2, interval_secs: 300 },
            ]
        );
    }

    #[test]
    fn buckets_given_as_an_array_render_compact_with_numbers_as_strings() {
        let (_, echo) = parse_buckets(&json!([{ "name": "bucket1", "max": 1, "interval": "60" }])).unwrap();
        assert_eq!(echo, r#"[{"name":"bucket1","max":"1","interval":"60"}]"#);
    }

    #[test]
    fn bucket_count_must_be_one_to_ten() {
        assert_eq!(invalid_param(parse_buckets(&json!([]))), "buckets");
        let eleven: Vec<Value> = (0..11).map(|i| json!({ "name": format!("b{i}"), "max": 1, "interval": 1 })).collect();
        assert_eq!(invalid_param(parse_buckets(&Value::Array(eleven))), "buckets");
        let ten: Vec<Value> = (0..10).map(|i| json!({ "name": format!("b{i}"), "max": 1, "interval": 1 })).collect();
        assert!(parse_buckets(&Value::Array(ten)).is_ok());
    }

    #[test]
    fn max_must_be_at_least_one() {
        let r = parse_buckets(&json!([{ "name": "b", "max": 0, "interval": 1 }]));
        assert_eq!(invalid_param(r), "buckets[0].max");
        let r = parse_buckets(&json!([{ "name": "b", "max": "-1", "interval": 1 }]));
        assert_eq!(invalid_param(r), "buckets[0].max");
    }

    #[test]
    fn interval_must_be_one_second_to_a_year() {
        for bad in [json!(0), json!("31536001"), json!("1.5"), json!("abc"), json!(true)] {
            let r = parse_buckets(&json!([{ "name": "b", "max": 1, "interval": bad }]));
            assert_eq!(invalid_param(r), "buckets[0].interval");
        }
        assert!(parse_buckets(&json!([{ "name": "b", "max": 1, "interval": "31536000" }])).is_ok());
        assert!(parse_buckets(&json!([{ "name": "b", "max": 1, "interval": 1 }])).is_ok());
    }

    #[test]
    fn bucket_names_must_be_unique_and_one_to_sixty_four_characters() {
        let dup = json!([{ "name": "b", "max": 1, "interval": 1 }, { "name": "b", "max": 2, "interval": 2 }]);
        assert_eq!(invalid_param(parse_buckets(&dup)), "buckets[1].name");
        let empty = json!([{ "name": "", "max": 1, "interval": 1 }]);
        assert_eq!(invalid_param(parse_buckets(&empty)), "buckets[0].name");
        let long = json!([{ "name": "x".repeat(65), "max": 1, "interval": 1 }]);
        assert_eq!(invalid_param(parse_buckets(&long)), "buckets[0].name");
        let missing = json!([{ "max": 1, "interval": 1 }]);
        assert_eq!(invalid_param(parse_buckets(&missing)), "buckets[0].name");
        assert!(parse_buckets(&json!([{ "name": "Min bucket", "max": 1, "interval": 1 }])).is_ok());
    }

    #[test]
    fn buckets_that_are_not_an_array_name_buckets() {
        assert_eq!(invalid_param(parse_buckets(&Value::String("[{nope".into()))), "buckets");
        assert_eq!(invalid_param(parse_buckets(&Value::String("{}".into()))), "buckets");
        assert_eq!(invalid_param(parse_buckets(&json!({ "name": "b" }))), "buckets");
        assert_eq!(invalid_param(parse_buckets(&json!(["b"]))), "buckets[0]");
    }

    #[test]
    fn limit_names_are_letters_digits_underscore_dot_dash_up_to_64() {
        assert!(is_valid_limit_name("limit_on_phonenumber"));
        assert!(is_valid_limit_name("a.B-9_"));
        assert!(is_valid_limit_name(&"x".repeat(64)));
        assert!(!is_valid_limit_name(&"x".repeat(65)));
        assert!(!is_valid_limit_name(""));
        assert!(!is_valid_limit_name("limit on ip"));
        assert!(!is_valid_limit_name("lïmit"));
    }

    #[test]
    fn default_limit_rejects_with_453() {
        let adm = [default_admission("AC1", "+1")];
        let states = [Some(Counter { count: 1, window_end_ms: 60_000 })];
        assert_eq!(plan_counters(59_999, &adm, &states), Err(Error::TooManyToDestination));
    }
}
