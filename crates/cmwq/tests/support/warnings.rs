//! A warning log: a runtime's warning handler that records every warning, so tests observe
//! warnings without parsing stderr.
#![allow(dead_code)]

use cmwq::{RuntimeBuilder, Warning, WarningKind};
use std::sync::{Arc, Mutex};

/// One recorded warning.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub kind: WarningKind,
    pub workqueue: String,
    pub items: Vec<String>,
    pub message: String,
}

/// Every warning of one runtime, in order.
#[derive(Debug, Clone, Default)]
pub struct WarningLog(Arc<Mutex<Vec<Recorded>>>);

impl WarningLog {
    pub fn new() -> WarningLog {
        WarningLog::default()
    }

    /// `b` with a warning handler that records into this log (and still prints, for humans).
    pub fn install(&self, b: RuntimeBuilder) -> RuntimeBuilder {
        self.install_then(b, |_| {})
    }

    /// Like [`WarningLog::install`], and then calls `then` with each warning.
    pub fn install_then(
        &self,
        b: RuntimeBuilder,
        then: impl Fn(&Warning<'_>) + Send + Sync + 'static,
    ) -> RuntimeBuilder {
        let log = self.0.clone();
        b.warning_handler(move |w: &Warning<'_>| {
            eprintln!("cmwq: WARNING (recorded): {w}");
            log.lock().unwrap().push(Recorded {
                kind: w.kind,
                workqueue: w.workqueue.to_owned(),
                items: w.items.to_vec(),
                message: w.message.to_owned(),
            });
            then(w);
        })
    }

    pub fn all(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().clone()
    }

    /// The recorded warnings for which `f` holds.
    pub fn matching(&self, f: impl Fn(&Recorded) -> bool) -> Vec<Recorded> {
        self.0.lock().unwrap().iter().filter(|r| f(r)).cloned().collect()
    }
}
