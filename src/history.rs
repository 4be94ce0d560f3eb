//! History for the console's charts, in memory: each topic's records and bytes in and out
//! per interval (10 s by default) and each group's lag per partition at every interval,
//! over a window (an hour). Traffic comes from the counters the publish and delivery paths
//! already keep, lag from what `/metrics` reports, never by reading the log. Memory is
//! bounded by the metrics' label caps (`--metrics-max-topics`, `--metrics-max-groups`)
//! times `window / interval` points.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Records in, bytes in, records out, bytes out.
pub type Traffic = [u64; 4];

/// Each partition's lag of one group: (topic, partition, lag).
pub type GroupLag = Vec<(String, u32, u64)>;

/// One interval of one topic's traffic, ending at `time_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrafficPoint {
    pub time_ms: i64,
    pub traffic: Traffic,
}

/// The history of every tracked topic.
pub struct History {
    interval: Duration,
    window: Duration,
    /// Points kept per topic: `window / interval`.
    capacity: usize,
    samples: Mutex<Samples>,
}

#[derive(Default)]
struct Samples {
    /// When each sample was taken, oldest first; every ring ends at the newest.
    times: VecDeque<i64>,
    topics: HashMap<String, TopicRing>,
    groups: HashMap<String, GroupRing>,
}

/// One group's lag at each sample since it was first seen.
#[derive(Default)]
struct GroupRing {
    /// Every (topic, partition) the group has had lag on, in the order first seen.
    partitions: Vec<(String, u32)>,
    /// Per sample, the lag of each of `partitions` (`None`: no committed offset then).
    points: VecDeque<Vec<Option<u64>>>,
}

/// A group's lag over a window: the total at each time and each partition's.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LagHistory {
    pub times: Vec<i64>,
    /// Total lag at each of `times`; `None` before the group was seen.
    pub total: Vec<Option<u64>>,
    /// (topic, partition, lag at each of `times`).
    pub partitions: Vec<(String, u32, Vec<Option<u64>>)>,
}

struct TopicRing {
    /// The counters at the last sample, to take the next one's difference from.
    totals: Traffic,
    /// One per sample since the topic was first counted, aligned with the end of `times`.
    points: VecDeque<Traffic>,
}

impl History {
    pub fn new(interval: Duration, window: Duration) -> History {
        let capacity = (window.as_millis() / interval.as_millis().max(1)).max(1) as usize;
        History {
            interval,
            window,
            capacity,
            samples: Mutex::default(),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The longest window a caller may ask for.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Takes one sample at `time_ms` from each topic's counters since the server started
    /// (`totals`). A topic the counters no longer list (deleted) loses its history.
    pub fn sample(&self, time_ms: i64, totals: Vec<(String, Traffic)>) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let Samples { times, topics, .. } = &mut *samples;
        times.push_back(time_ms);
        if times.len() > self.capacity {
            times.pop_front();
        }
        let mut seen: HashMap<String, Traffic> = totals.into_iter().collect();
        topics.retain(|topic, _| seen.contains_key(topic));
        for (topic, now) in seen.drain() {
            let ring = topics.entry(topic).or_insert_with(|| TopicRing {
                totals: [0; 4],
                points: VecDeque::new(),
            });
            let delta = std::array::from_fn(|i| now[i].saturating_sub(ring.totals[i]));
            ring.totals = now;
            ring.points.push_back(delta);
            if ring.points.len() > self.capacity {
                ring.points.pop_front();
            }
        }
    }

    /// Records each group's lag per partition now (as `/metrics` samples them: the first
    /// groups by name, up to the cap). A group no longer listed loses its history.
    pub fn sample_groups(&self, groups: Vec<(String, GroupLag)>) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen: HashMap<String, GroupLag> = groups.into_iter().collect();
        samples.groups.retain(|group, _| seen.contains_key(group));
        for (group, lags) in seen.drain() {
            let ring = samples.groups.entry(group).or_default();
            let mut point = vec![None; ring.partitions.len()];
            for (topic, partition, lag) in lags {
                let at = match ring
                    .partitions
                    .iter()
                    .position(|(t, p)| *t == topic && *p == partition)
                {
                    Some(at) => at,
                    None => {
                        ring.partitions.push((topic, partition));
                        point.push(None);
                        ring.partitions.len() - 1
                    }
                };
                point[at] = Some(lag);
            }
            ring.points.push_back(point);
            if ring.points.len() > self.capacity {
                ring.points.pop_front();
            }
        }
    }

    /// The group's lag at the samples taken after `since_ms`; `None` if it has no history.
    pub fn group(&self, group: &str, since_ms: i64) -> Option<LagHistory> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let ring = samples.groups.get(group)?;
        // The group ring may be one sample behind the times (sampled just after them).
        let missing = samples.times.len().saturating_sub(ring.points.len());
        let mut history = LagHistory {
            partitions: ring
                .partitions
                .iter()
                .map(|(topic, partition)| (topic.clone(), *partition, Vec::new()))
                .collect(),
            ..LagHistory::default()
        };
        for (i, time) in samples.times.iter().enumerate() {
            if *time <= since_ms {
                continue;
            }
            let point = i.checked_sub(missing).and_then(|at| ring.points.get(at));
            history.times.push(*time);
            history
                .total
                .push(point.map(|lags| lags.iter().flatten().sum()));
            for (k, (_, _, lags)) in history.partitions.iter_mut().enumerate() {
                lags.push(point.and_then(|lags| lags.get(k).copied().flatten()));
            }
        }
        Some(history)
    }

    /// The topic's points taken after `since_ms`, oldest first; zeros for samples taken
    /// before the topic had any traffic.
    pub fn topic(&self, topic: &str, since_ms: i64) -> Vec<TrafficPoint> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let points = samples.topics.get(topic).map(|ring| &ring.points);
        let missing = samples
            .times
            .len()
            .saturating_sub(points.map_or(0, VecDeque::len));
        samples
            .times
            .iter()
            .enumerate()
            .filter(|(_, time)| **time > since_ms)
            .map(|(i, time)| TrafficPoint {
                time_ms: *time,
                traffic: match i.checked_sub(missing) {
                    Some(at) => points.map_or([0; 4], |points| points[at]),
                    None => [0; 4],
                },
            })
            .collect()
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(records_in: u64) -> Vec<(String, Traffic)> {
        vec![("t".to_owned(), [records_in, records_in * 10, 0, 0])]
    }

    #[test]
    fn points_are_differences_and_the_ring_keeps_the_window() {
        let history = History::new(Duration::from_secs(10), Duration::from_secs(30));
        history.sample(10_000, Vec::new());
        for (i, total) in [5, 5, 12, 20].into_iter().enumerate() {
            history.sample(20_000 + 10_000 * i as i64, totals(total));
        }
        let points = history.topic("t", 0);
        let times: Vec<i64> = points.iter().map(|p| p.time_ms).collect();
        assert_eq!(
            times,
            [30_000, 40_000, 50_000],
            "three points in 30 s of 10 s"
        );
        let ins: Vec<u64> = points.iter().map(|p| p.traffic[0]).collect();
        assert_eq!(ins, [0, 7, 8]);
        assert_eq!(history.topic("t", 35_000).len(), 2);
        assert!(
            history
                .topic("other", 0)
                .iter()
                .all(|p| p.traffic == [0; 4])
        );
        assert_eq!(history.topic("other", 0).len(), 3);
    }

    #[test]
    fn a_topic_counted_later_gets_zeros_before_and_a_deleted_one_loses_its_history() {
        let history = History::new(Duration::from_secs(1), Duration::from_secs(60));
        history.sample(1_000, Vec::new());
        history.sample(2_000, totals(3));
        let points = history.topic("t", 0);
        assert_eq!(points[0].traffic, [0; 4]);
        assert_eq!(points[1].traffic, [3, 30, 0, 0]);
        history.sample(3_000, Vec::new());
        history.sample(4_000, totals(1));
        assert_eq!(
            history.topic("t", 3_500)[0].traffic,
            [1, 10, 0, 0],
            "counted anew"
        );
    }
}
