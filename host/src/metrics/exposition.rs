//! The Prometheus text exposition format (version 0.0.4): families with
//! their `# HELP` and `# TYPE`, samples with escaped label values.

use std::fmt::Write;

use super::histogram::Histogram;

/// The media type of what [`Exposition`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metrics page being written, one family at a time.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

/// Label pairs of one sample.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Exposition {
    pub fn finish(self) -> String {
        self.text
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: Labels, extra: Option<(&str, &str)>, value: f64) {
        self.text.push_str(name);
        let mut pairs = labels.iter().copied().chain(extra).peekable();
        if pairs.peek().is_some() {
            self.text.push('{');
            for (i, (key, value)) in pairs.enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    /// A counter family (`name` ends in `_total`) with one sample per label set.
    pub fn counters<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, u64)>,
    ) {
        self.header(name, "counter", help);
        for (labels, value) in samples {
            self.sample(name, labels, None, value as f64);
        }
    }

    /// An unlabelled counter with a fractional value (CPU seconds).
    pub fn counter_f64(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, "counter", help);
        self.sample(name, &[], None, value);
    }

    /// A gauge family.
    pub fn gauges<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
    ) {
        self.header(name, "gauge", help);
        for (labels, value) in samples {
            self.sample(name, labels, None, value);
        }
    }

    /// A histogram family: `_bucket` (cumulative, with `le`), `_sum`, `_count`.
    pub fn histograms<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, &'a Histogram)>,
    ) {
        self.header(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (labels, histogram) in samples {
            let (buckets, count, sum) = histogram.snapshot();
            for (bound, n) in buckets {
                self.sample(&bucket, labels, Some(("le", &number(bound))), n as f64);
            }
            self.sample(&bucket, labels, Some(("le", "+Inf")), count as f64);
            self.sample(&format!("{name}_sum"), labels, None, sum);
            self.sample(&format!("{name}_count"), labels, None, count as f64);
        }
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_histograms_end_in_inf() {
        let mut page = Exposition::default();
        page.counters("x_total", "Things.", [(&[("plugin", "a\"b\\c\nd")][..], 3)]);
        let h = Histogram::new(&[0.5]);
        h.observe(0.25);
        page.histograms("y_seconds", "Time.", [(&[][..], &h)]);
        assert_eq!(
            page.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\n\
             x_total{plugin=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP y_seconds Time.\n# TYPE y_seconds histogram\n\
             y_seconds_bucket{le=\"0.5\"} 1\ny_seconds_bucket{le=\"+Inf\"} 1\n\
             y_seconds_sum 0.25\ny_seconds_count 1\n"
        );
    }
}
