//! A clock the dev server can move forward, so windows, expiry and guard times can be tried
//! without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::{domain::time::Millis, ports::Clock};

#[derive(Default)]
pub struct AdjustableClock {
    offset_ms: AtomicI64,
}

impl AdjustableClock {
    pub fn advance_secs(&self, secs: i64) {
        self.offset_ms.fetch_add(secs.saturating_mul(1000), Ordering::SeqCst);
    }
}

impl Clock for AdjustableClock {
    fn now_ms(&self) -> Millis {
        chrono::Utc::now().timestamp_millis() + self.offset_ms.load(Ordering::SeqCst)
    }
}
