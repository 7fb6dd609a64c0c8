//! PostgreSQL: each row rendered by the server as JSON (`row_to_json`), the position
//! columns as text and given back as text cast to the column's own type, so no value is
//! converted on the way and none of the client's type features are needed.

use std::{sync::Arc, time::Duration};

use futures_util::{StreamExt, pin_mut};
use serde_json::Value;
use sql_common::pg::{describe, refused, transient};
use sql_source::Mode;
use tokio_postgres::{Client, NoTls, Statement};

use crate::{Column, Failure, Out, Plan, Position, Row};

/// The most rows handed on at once while a result is streamed.
const CHUNK: usize = 1000;

const INTEGERS: &[&str] = &["int2", "int4", "int8", "numeric"];
const TIMESTAMPS: &[&str] = &["timestamp", "timestamptz", "date"];

fn failure(e: &tokio_postgres::Error) -> Failure {
    if transient(e) {
        Failure::Lost(describe(e))
    } else {
        Failure::Fatal(describe(e))
    }
}

pub struct Reader {
    client: Client,
    shown: String,
    plan: Arc<Plan>,
    /// Rows from the first (no position yet), rows past a position.
    first: Statement,
    next: Statement,
    /// Rows at one timestamp; the last row there is; every row.
    group: Option<Statement>,
    last: Option<Statement>,
    bulk: Option<Statement>,
}

impl Reader {
    pub async fn open(url: &str, timeout: Duration, plan: Arc<Plan>) -> Result<Reader, Failure> {
        let (config, shown) =
            sql_common::pg::config(url, timeout, "runnel-sql-source").map_err(Failure::Fatal)?;
        let (client, connection) = config.connect(NoTls).await.map_err(|e| {
            let why = format!("connecting to {shown}: {}", describe(&e));
            if refused(&e) {
                Failure::Fatal(why)
            } else {
                Failure::Lost(why)
            }
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "The PostgreSQL connection ended.");
            }
        });
        // The position columns' types, from the statement's description alone.
        let probe = plan.probe();
        let probe = client
            .prepare(&probe)
            .await
            .map_err(|e| match failure(&e) {
                Failure::Fatal(why) => Failure::Fatal(format!("reading from {shown}: {why}")),
                other => other,
            })?;
        let types: Vec<String> = probe
            .columns()
            .iter()
            .map(|c| c.type_().name().to_string())
            .collect();
        let (inc_type, ts_type) = (types[0].clone(), types[1].clone());
        if let Some(c) = &plan.incrementing
            && !INTEGERS.contains(&inc_type.as_str())
        {
            return Err(Failure::Fatal(format!(
                "column {c} is {inc_type}: the incrementing column must be an integer (smallint, integer, bigint or numeric)"
            )));
        }
        if let Some(c) = &plan.timestamp
            && !TIMESTAMPS.contains(&ts_type.as_str())
        {
            return Err(Failure::Fatal(format!(
                "column {c} is {ts_type}: the timestamp column must be a timestamp, timestamptz or date"
            )));
        }
        let text = |c: &Option<String>| match c {
            Some(c) => format!("q.{c}::text"),
            None => "NULL::text".into(),
        };
        let select = format!(
            "SELECT row_to_json(q)::text, {}, {}, {} FROM ({}) AS q",
            text(&plan.incrementing),
            text(&plan.timestamp),
            text(&plan.key),
            plan.source
        );
        let old_enough = match (&plan.timestamp, plan.delay.is_zero()) {
            (Some(ts), false) => Some(format!(
                "q.{ts} < (now() - interval '{} milliseconds')::{ts_type}",
                plan.delay.as_millis()
            )),
            _ => None,
        };
        let sqls = plan.sqls(
            &select,
            |n, c| match c {
                Column::Incrementing => format!("${n}::text::{inc_type}"),
                Column::Timestamp => format!("${n}::text::{ts_type}"),
            },
            old_enough,
        );
        let prepare = |sql: String| {
            let client = &client;
            async move { client.prepare(&sql).await.map_err(|e| failure(&e)) }
        };
        let (first, next, group, last, bulk);
        if plan.mode == Mode::Bulk {
            bulk = Some(prepare(sqls.bulk).await?);
            first = bulk.clone().expect("prepared");
            next = first.clone();
            group = None;
            last = None;
        } else {
            first = prepare(sqls.first).await?;
            next = prepare(sqls.next).await?;
            group = match plan.mode {
                Mode::Timestamp => Some(prepare(sqls.group).await?),
                _ => None,
            };
            last = Some(prepare(sqls.last).await?);
            bulk = None;
        }
        Ok(Reader {
            client,
            shown,
            plan,
            first,
            next,
            group,
            last,
            bulk,
        })
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn row(r: &tokio_postgres::Row) -> Row {
        let text = |i: usize| r.get::<_, Option<String>>(i);
        Row {
            value: text(0).unwrap_or_else(|| "null".into()),
            incrementing: text(1).map(Value::String),
            timestamp: text(2).map(Value::String),
            key: text(3),
        }
    }

    pub async fn next(&mut self, after: Option<&Position>) -> Result<Vec<Row>, Failure> {
        let text = |v: &Option<Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
            None => None,
        };
        let rows = match after {
            None => self.client.query(&self.first, &[]).await,
            Some(p) => {
                let (inc, ts) = (text(&p.incrementing), text(&p.timestamp));
                match self.plan.mode {
                    Mode::Incrementing => self.client.query(&self.next, &[&inc]).await,
                    Mode::Timestamp => self.client.query(&self.next, &[&ts]).await,
                    _ => self.client.query(&self.next, &[&ts, &inc]).await,
                }
            }
        }
        .map_err(|e| failure(&e))?;
        Ok(rows.iter().map(Reader::row).collect())
    }

    /// Streams `statement`'s rows on in chunks; the position after the last one when
    /// `positioned`.
    async fn stream(
        &self,
        statement: &Statement,
        params: &[Option<String>],
        out: &Out,
        positioned: bool,
    ) -> Result<Option<Position>, Failure> {
        let rows = self
            .client
            .query_raw(statement, params.iter())
            .await
            .map_err(|e| failure(&e))?;
        pin_mut!(rows);
        let mut chunk = Vec::with_capacity(CHUNK);
        while let Some(r) = rows.next().await {
            let r = r.map_err(|e| failure(&e))?;
            if chunk.len() == CHUNK {
                out.some(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                    .await?;
            }
            chunk.push(Reader::row(&r));
        }
        if positioned {
            Ok(out.ending(chunk).await?)
        } else {
            out.some(chunk).await?;
            Ok(None)
        }
    }

    pub async fn group(&mut self, ts: &Value, out: &Out) -> Result<Option<Position>, Failure> {
        let ts = match ts {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let statement = self.group.clone().expect("timestamp mode");
        self.stream(&statement, &[Some(ts)], out, true).await
    }

    pub async fn bulk(&mut self, out: &Out) -> Result<(), Failure> {
        let statement = self.bulk.clone().expect("bulk mode");
        self.stream(&statement, &[], out, false).await?;
        Ok(())
    }

    pub async fn last(&mut self) -> Result<Option<Row>, Failure> {
        let statement = self.last.clone().expect("a positioned mode");
        let rows = self
            .client
            .query(&statement, &[])
            .await
            .map_err(|e| failure(&e))?;
        Ok(rows.first().map(Reader::row))
    }
}
