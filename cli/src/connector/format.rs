//! Text output: kubectl-style tables and ages.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use runnel_operator::Connector;

/// An age as kubectl prints it (`duration.HumanDuration`): `45s`, `3m10s`, `25m`, `5h3m`,
/// `30h`, `4d2h`, `20d`, `2y10d`, `9y`.
pub fn human_age(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    let s = seconds;
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 3 * 60 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        let y = d / 365;
        if d % 365 == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{}d", d % 365)
        }
    } else {
        format!("{}y", d / 365)
    }
}

/// The age of a timestamp at `now`, or `<unknown>` when there is none.
pub fn age_of(t: Option<&Time>, now: Timestamp) -> String {
    match t {
        Some(t) => human_age(now.as_second() - t.0.as_second()),
        None => "<unknown>".into(),
    }
}

/// The phase for people: Pending until the operator has written one.
pub fn phase(c: &Connector) -> String {
    c.status
        .as_ref()
        .and_then(|s| s.phase)
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "Pending".into())
}

/// The `runnel connector list` table; with `namespaces`, a NAMESPACE column first.
pub fn connector_table(items: &[Connector], namespaces: bool, now: Timestamp) -> String {
    let mut header = vec!["NAME", "TYPE", "VERSION", "TOPIC", "STATUS", "AGE"];
    if namespaces {
        header.insert(0, "NAMESPACE");
    }
    let rows = items
        .iter()
        .map(|c| {
            let mut row = vec![
                c.metadata.name.clone().unwrap_or_default(),
                c.spec.kind.clone(),
                c.spec.version.clone().unwrap_or_else(|| "<default>".into()),
                c.spec.topic.clone(),
                phase(c),
                age_of(c.metadata.creation_timestamp.as_ref(), now),
            ];
            if namespaces {
                row.insert(0, c.metadata.namespace.clone().unwrap_or_default());
            }
            row
        })
        .collect::<Vec<_>>();
    table(&header, &rows)
}

/// Left-aligned columns three spaces apart, as kubectl prints them; no trailing spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(w - cell.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use kube::api::ObjectMeta;
    use runnel_operator::{ConnectorSpec, ConnectorStatus, crd::Phase};

    #[test]
    fn ages_read_like_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (190, "3m10s"),
            (25 * 60, "25m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 3 * 60, "5h3m"),
            (30 * 3600, "30h"),
            (4 * 86400, "4d"),
            (4 * 86400 + 2 * 3600, "4d2h"),
            (20 * 86400, "20d"),
            (2 * 365 * 86400, "2y"),
            (2 * 365 * 86400 + 10 * 86400, "2y10d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (s, want) in cases {
            assert_eq!(human_age(s), want, "{s} seconds");
        }
    }

    fn connector(name: &str, ns: &str, created: i64, phase: Option<Phase>) -> Connector {
        let mut c = Connector::new(
            name,
            ConnectorSpec {
                kind: "http-source".into(),
                version: Some("0.1.0".into()),
                topic: format!("{name}-topic"),
                create_topic: false,
                config: None,
                transforms: vec![],
                producer: None,
                consumer: None,
                secrets: vec![],
                image: None,
                resources: None,
                hub: None,
                state: Default::default(),
            },
        );
        c.metadata = ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
            ..Default::default()
        };
        c.status = phase.map(|p| ConnectorStatus {
            phase: Some(p),
            ..Default::default()
        });
        c
    }

    #[test]
    fn table_aligns_columns_and_defaults_the_phase() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let items = vec![
            connector("cat-facts", "default", 1_000_000 - 5, Some(Phase::Running)),
            connector("a", "team-b", 1_000_000 - 4 * 86400, None),
        ];
        assert_eq!(
            connector_table(&items, false, now),
            "\
NAME        TYPE          VERSION   TOPIC             STATUS    AGE
cat-facts   http-source   0.1.0     cat-facts-topic   Running   5s
a           http-source   0.1.0     a-topic           Pending   4d
"
        );
        let all = connector_table(&items, true, now);
        assert!(all.starts_with("NAMESPACE   NAME        TYPE"), "{all}");
        assert!(
            all.contains("\nteam-b      a           http-source"),
            "{all}"
        );
    }

    #[test]
    fn an_empty_list_prints_the_header() {
        let now = Timestamp::from_second(0).unwrap();
        assert_eq!(
            connector_table(&[], false, now),
            "NAME   TYPE   VERSION   TOPIC   STATUS   AGE\n"
        );
    }
}
