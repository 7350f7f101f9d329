//! Switchyard test fixture `slow-describe`: a transformer whose
//! `describe()` loops until the host's deadline stops it, so that loading
//! it takes the whole deadline and then fails. What the API does while a
//! load is in progress is tested with it.

// The generated export glue is `unsafe`; nothing else in the crate is.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "transformer",
});

struct SlowDescribe;

impl Guest for SlowDescribe {
    fn describe() -> PluginInfo {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    fn handle(_: Event) -> Result<Vec<Action>, HandleError> {
        Ok(Vec::new())
    }

    fn view(_: String, _: Option<String>, _: u32) -> Result<ViewPage, String> {
        Err("no views".into())
    }
}

export!(SlowDescribe);
