//! Switchyard test fixture `slow-describe`: a transformer whose
//! `describe()` loops until the host's deadline stops it, so that loading
//! it takes the whole deadline and then fails. What the API does while a
//! load is in progress is tested with it.

use switchyard_plugin::{Action, Event, HandleError, PluginInfo, Transformer};

struct SlowDescribe;

impl Transformer for SlowDescribe {
    fn describe() -> PluginInfo {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    fn handle(_: Event) -> Result<Vec<Action>, HandleError> {
        Ok(Vec::new())
    }
}

switchyard_plugin::export_transformer!(SlowDescribe);
