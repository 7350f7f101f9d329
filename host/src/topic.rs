//! AMQP topic-exchange matching of routing keys against binding keys, for
//! events that reach plugins without going through the broker (the
//! `POST /analytics/data` route).

/// Whether `routing_key` matches `binding`: words are separated by `.`,
/// `*` stands for exactly one word and `#` for zero or more.
pub fn matches(binding: &str, routing_key: &str) -> bool {
    let pattern: Vec<&str> = binding.split('.').collect();
    let words: Vec<&str> = routing_key.split('.').collect();
    match_words(&pattern, &words)
}

fn match_words(pattern: &[&str], words: &[&str]) -> bool {
    match pattern.split_first() {
        None => words.is_empty(),
        Some((&"#", rest)) => (0..=words.len()).any(|skip| match_words(rest, &words[skip..])),
        Some((p, rest)) => match words.split_first() {
            Some((w, tail)) if *p == "*" || p == w => match_words(rest, tail),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn star_is_one_word_and_hash_is_any_number() {
        assert!(matches("customer.*", "customer.created"));
        assert!(!matches("customer.*", "customer"));
        assert!(!matches("customer.*", "customer.created.v2"));
        assert!(matches("customer.#", "customer"));
        assert!(matches("customer.#", "customer.created.v2"));
        assert!(matches("#", "anything.at.all"));
        assert!(matches("*.updated", "inventory.updated"));
        assert!(!matches("inventory.*", "customer.created"));
        assert!(matches("analytics.data", "analytics.data"));
        assert!(matches("a.#.z", "a.z"));
        assert!(matches("a.#.z", "a.b.c.z"));
        assert!(!matches("a.#.z", "a.b.c"));
    }
}
