//! Switchyard test fixture: a real component, but of the `wasi:cli/command`
//! world rather than `switchyard:plugin/transformer`; the host must refuse it.

fn main() {
    println!("I am not a Switchyard plugin");
}
