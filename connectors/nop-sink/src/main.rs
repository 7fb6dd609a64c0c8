//! nop-sink: every batch is taken as delivered at once; its offsets are committed as any
//! sink's are, so a restart goes on where the last one stopped. Counts go to `/metrics`
//! (`records_in`, `records_out`) and, with `report_every`, to the log.

use std::{
    process::ExitCode,
    sync::Mutex,
    time::{Duration, Instant},
};

use nop_sink::{NopSink, NopSinkConfig};
use runnel_runtime::{
    BoxError, ConsumedRecord, app,
    config::ConnectorConfig,
    pipeline::{DeliverBatch, DeliveryError, SinkContext},
};

/// What was discarded so far, and when the last report went out.
struct Tally {
    records: u64,
    bytes: u64,
    last: Instant,
    at_last: u64,
}

struct Discard {
    log: bool,
    report_every: Option<Duration>,
    tally: Mutex<Tally>,
}

impl DeliverBatch for Discard {
    async fn deliver_batch(
        &self,
        batch: &[ConsumedRecord],
    ) -> Result<Vec<(usize, DeliveryError)>, DeliveryError> {
        if self.log {
            for r in batch {
                tracing::debug!(topic = %r.topic, partition = r.partition, offset = r.offset, bytes = r.record.size(), "Discarded a record.");
            }
        }
        let bytes: usize = batch.iter().map(|r| r.record.size()).sum();
        let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        t.records += batch.len() as u64;
        t.bytes += bytes as u64;
        if let Some(every) = self.report_every
            && t.last.elapsed() >= every
        {
            let secs = t.last.elapsed().as_secs_f64();
            let rate = (t.records - t.at_last) as f64 / secs;
            tracing::info!(
                records = t.records,
                bytes = t.bytes,
                records_per_second = rate.round() as u64,
                "Discarded so far."
            );
            t.last = Instant::now();
            t.at_last = t.records;
        }
        Ok(Vec::new())
    }
}

fn make(config: &ConnectorConfig<NopSinkConfig>, _: &SinkContext) -> Result<Discard, BoxError> {
    let c = &config.config;
    Ok(Discard {
        log: c.log,
        report_every: c.report_every.map(|d| d.0),
        tally: Mutex::new(Tally {
            records: 0,
            bytes: 0,
            last: Instant::now(),
            at_last: 0,
        }),
    })
}

fn main() -> ExitCode {
    app::batch_sink_main::<NopSink, _, _>(|config, ctx| {
        ctx.set_ready(true);
        make(config, ctx)
    })
}
