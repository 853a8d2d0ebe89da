//! Metrics for both binaries, in the Prometheus text format (0.0.4), written
//! by `prometheus-client`'s encoder.
//!
//! Values live where the services keep them: relaxed atomics on the per-frame
//! path ([`Histogram`], `AtomicU64` counters), counters and tables the services
//! already hold. At each scrape, an [`Exposition`] calls its collectors, which
//! write each family once through [`Families`]: the crate names counters
//! (`_total`), writes bucket lines, escapes label values and adds the
//! exposition's constant labels (the edge's `node`). No metric is written by
//! hand anywhere else.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The `Content-Type` of what [`Exposition::render`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Histogram bucket upper bounds, seconds (1 ms .. 10 s). Finer between
/// 0.1 and 1 s, where a loaded node's p99 lies: a p99 read inside one wide
/// bucket is only interpolated.
pub const LATENCY_BUCKETS: [f64; 19] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0,
    2.5, 5.0, 10.0,
];

/// An `f64` gauge set and read without a lock.
#[derive(Debug, Default)]
pub struct F64Gauge(AtomicU64);

impl F64Gauge {
    /// Sets it.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    /// Reads it (0 until set).
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// A latency histogram with fixed buckets ([`LATENCY_BUCKETS`]). Observing is
/// a few relaxed atomic additions: no lock and no allocation, so the
/// per-frame path can afford it.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Mean observation, seconds (0 when empty).
    pub fn mean(&self) -> f64 {
        match self.count() {
            0 => 0.0,
            n => self.sum_seconds() / n as f64,
        }
    }

    /// Sum of the observations, seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Approximate quantile `q` (0..1) from the buckets (upper bound of the
    /// bucket holding it), seconds; infinity when it lies past the last bucket.
    pub fn quantile(&self, q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let want = (total as f64 * q).ceil() as u64;
        let mut acc = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            acc += self.buckets[i].load(Ordering::Relaxed);
            if acc >= want {
                return *b;
            }
        }
        f64::INFINITY
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        // Per-bucket counts (the encoder accumulates them); read the count
        // first so that a racing observation never makes +Inf smaller than
        // the last bucket.
        let count = self.count();
        let mut buckets = [(0.0, 0); LATENCY_BUCKETS.len()];
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            buckets[i] = (*b, self.buckets[i].load(Ordering::Relaxed));
        }
        let seen: u64 = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum_seconds(), count.max(seen), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// What a collector writes at a scrape: each family once, with its members.
pub struct Families<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl fmt::Debug for Families<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Families")
    }
}

impl Families<'_> {
    /// A counter without labels (`name` without `_total`: the encoder adds it).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        let m = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(value).encode(m)
    }

    /// A counter family, one member per label set.
    pub fn counters<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        members: impl IntoIterator<Item = (L, u64)>,
    ) -> fmt::Result {
        let mut m = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, v) in members {
            ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A gauge without labels.
    pub fn gauge<V: EncodeGaugeValue>(&mut self, name: &str, help: &str, value: V) -> fmt::Result {
        let m = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(value).encode(m)
    }

    /// A gauge family, one member per label set.
    pub fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        members: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        let mut m = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, v) in members {
            ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A histogram without labels.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) -> fmt::Result {
        let m = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        h.encode(m)
    }

    /// A histogram family, one member per label set.
    pub fn histograms<'h, L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        members: impl IntoIterator<Item = (L, &'h Histogram)>,
    ) -> fmt::Result {
        let mut m = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, h) in members {
            h.encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

type Collect = dyn Fn(&mut Families<'_>) -> fmt::Result + Send + Sync;

/// One collector: a closure over the values it reads at each scrape.
struct FnCollector(Box<Collect>);

impl fmt::Debug for FnCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnCollector")
    }
}

impl Collector for FnCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        (self.0)(&mut Families { encoder })
    }
}

/// A process's metrics: collectors called at each scrape, and labels every
/// sample carries.
#[derive(Debug)]
pub struct Exposition {
    registry: Registry,
}

impl Default for Exposition {
    fn default() -> Self {
        Exposition::new(&[])
    }
}

impl Exposition {
    /// An exposition whose every sample carries `labels` (for example the
    /// edge's `node`).
    pub fn new(labels: &[(&'static str, &str)]) -> Self {
        let labels: Vec<(Cow<'static, str>, Cow<'static, str>)> = labels
            .iter()
            .map(|(k, v)| (Cow::Borrowed(*k), Cow::Owned((*v).to_owned())))
            .collect();
        Exposition {
            registry: Registry::with_labels(labels.into_iter()),
        }
    }

    /// Adds a collector, called at each scrape in the order added.
    pub fn collect(
        &mut self,
        collect: impl Fn(&mut Families<'_>) -> fmt::Result + Send + Sync + 'static,
    ) -> &mut Self {
        self.registry
            .register_collector(Box::new(FnCollector(Box::new(collect))));
        self
    }

    /// The text exposition now.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String fails only if a collector returns an error,
        // which they do only when the encoder does: the text so far stands.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "metrics exposition incomplete");
        }
        out
    }
}

/// `vidar_certificate_expiry_timestamp_seconds`: when the process's
/// certificate expires (`at`, seconds since 1970; nothing without one).
/// Alert on `vidar_certificate_expiry_timestamp_seconds - time() < 30 * 86400`.
pub fn certificate_expiry(f: &mut Families<'_>, at: Option<i64>) -> fmt::Result {
    match at {
        Some(t) => f.gauge(
            "vidar_certificate_expiry_timestamp_seconds",
            "When this process's certificate (its bundle's cert.pem) expires, seconds since 1970.",
            t,
        ),
        None => Ok(()),
    }
}

/// The value of one sample in an exposition's text, by its name and labels
/// as written (`value(text, "vidar_frames_total", &[("camera", "a")])`), for
/// tests and tools that read metrics.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (head, v) = line.rsplit_once(' ')?;
        let (n, rest) = match head.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (head, ""),
        };
        if n != name {
            return None;
        }
        let all = labels
            .iter()
            .all(|(k, want)| rest.split(',').any(|kv| kv == format!("{k}=\"{want}\"")));
        if all {
            v.parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn histogram_buckets_and_quantiles() {
        let h = Histogram::default();
        for ms in [1u64, 2, 3, 40, 40, 40, 40, 40, 40, 900] {
            h.observe(Duration::from_millis(ms));
        }
        h.observe(Duration::from_secs(60));
        assert_eq!(h.count(), 11);
        assert_eq!(h.quantile(0.5), 0.05);
        assert_eq!(h.quantile(0.9), 1.0);
        assert_eq!(h.quantile(1.0), f64::INFINITY);
        assert!(
            (h.sum_seconds() - 61.146).abs() < 1e-9,
            "{}",
            h.sum_seconds()
        );
    }

    #[test]
    fn families_are_written_once_with_escaped_labels_and_the_node_label() {
        let frames = Arc::new(AtomicU64::new(7));
        let latency = Arc::new(Histogram::default());
        latency.observe(Duration::from_millis(3));
        latency.observe(Duration::from_secs(30));
        let mut expo = Exposition::new(&[("node", "edge-1")]);
        let (f2, l2) = (Arc::clone(&frames), Arc::clone(&latency));
        expo.collect(move |f| {
            f.counters(
                "vidar_frames",
                "Frames decoded.",
                [
                    ([("camera", "a")], f2.load(Ordering::Relaxed)),
                    ([("camera", "b\"\\\n")], 1),
                ],
            )?;
            f.gauge("vidar_up", "Up.", 1u64)?;
            f.histograms(
                "vidar_latency_seconds",
                "Latency.",
                [([("camera", "a")], l2.as_ref())],
            )
        });
        frames.fetch_add(1, Ordering::Relaxed);
        let text = expo.render();
        assert_eq!(
            text.matches("# TYPE vidar_frames_total counter").count(),
            1,
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                "vidar_frames_total",
                &[("node", "edge-1"), ("camera", "a")]
            ),
            Some(8.0),
            "{text}"
        );
        assert!(
            text.contains(r#"camera="b\"\\\n""#),
            "label values are escaped: {text}"
        );
        assert_eq!(value(&text, "vidar_up", &[("node", "edge-1")]), Some(1.0));
        assert_eq!(
            value(
                &text,
                "vidar_latency_seconds_bucket",
                &[("camera", "a"), ("le", "0.005")]
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                "vidar_latency_seconds_bucket",
                &[("camera", "a"), ("le", "+Inf")]
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            value(&text, "vidar_latency_seconds_count", &[("camera", "a")]),
            Some(2.0)
        );
        assert_eq!(
            value(&text, "vidar_frames_total", &[("camera", "zzz")]),
            None
        );
    }
}
