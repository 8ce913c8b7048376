//! Parsers for the human units on the command line: durations, cpu, bytes, KEY=VALUE pairs.

use std::time::Duration;

/// `500ms`, `30s`, `2m`, `1h 30m` (any humantime duration), or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a duration like 500ms, 30s or 2m"));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 500ms, 30s or 2m: {e}"))
}

/// `500m` (millicores), `0.5` or `2` (cores).
pub fn parse_cpu(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let err = || format!("{s:?} is not a cpu amount like 500m, 0.5 or 2");
    let millis = match s.strip_suffix('m') {
        Some(m) => m.parse::<f64>().map_err(|_| err())?,
        None => s.parse::<f64>().map_err(|_| err())? * 1000.0,
    };
    if !(0.0..=u32::MAX as f64).contains(&millis) {
        return Err(err());
    }
    Ok(millis.round() as u32)
}

/// `1048576`, `512Ki`, `512Mi`, `2Gi`, `1Ti`, or SI `k`, `M`, `G`, `T` (also `KB`, `MB`, ...).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let err = || format!("{s:?} is not a size like 512Mi, 2G or 1048576");
    let (num, unit) = split_unit(s);
    let value: f64 = num.parse().map_err(|_| err())?;
    let mult: f64 = match unit.to_ascii_lowercase().trim_end_matches('b') {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "ki" => 1024.0,
        "mi" => 1024.0 * 1024.0,
        "gi" => 1024.0 * 1024.0 * 1024.0,
        "ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(err()),
    };
    let bytes = value * mult;
    if !(0.0..=u64::MAX as f64).contains(&bytes) {
        return Err(err());
    }
    Ok(bytes.round() as u64)
}

/// `KEY=VALUE`.
pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// A job array's indices, as Slurm writes them: `FIRST-LAST` or one index, then optionally `%P` (at most P
/// unfinished at once): `0-9999%100`.
pub fn parse_array(s: &str) -> Result<burst_proto::v1::ArraySpec, String> {
    let bad = || format!("{s:?} is not an array: write FIRST-LAST[%P], e.g. 0-9999%100");
    let (range, parallelism) = match s.split_once('%') {
        Some((range, p)) => (range, p.parse::<u32>().ok().filter(|&p| p > 0).ok_or_else(bad)?),
        None => (s, 0),
    };
    let (first, last) = range.split_once('-').unwrap_or((range, range));
    let (first, last) = (first.parse::<u32>().map_err(|_| bad())?, last.parse::<u32>().map_err(|_| bad())?);
    if last < first {
        return Err(format!("array {s:?} ends before it starts"));
    }
    Ok(burst_proto::v1::ArraySpec { first, last, parallelism })
}

fn split_unit(s: &str) -> (&str, &str) {
    let at = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    (&s[..at], &s[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_parse_as_slurm_writes_them() {
        let a = |first, last, parallelism| burst_proto::v1::ArraySpec { first, last, parallelism };
        assert_eq!(parse_array("0-9999%100"), Ok(a(0, 9999, 100)));
        assert_eq!(parse_array("1-3"), Ok(a(1, 3, 0)));
        assert_eq!(parse_array("7"), Ok(a(7, 7, 0)));
        for bad in ["", "-", "a-b", "1-", "3-1", "0-9%0", "0-9%", "0-9%x", "-1-5"] {
            assert!(parse_array(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn cpu_and_bytes() {
        assert_eq!(parse_cpu("500m").unwrap(), 500);
        assert_eq!(parse_cpu("1.5").unwrap(), 1500);
        assert!(parse_cpu("lots").is_err());
        assert_eq!(parse_bytes("512Mi").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("2G").unwrap(), 2_000_000_000);
        assert_eq!(parse_bytes("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_bytes("10").unwrap(), 10);
        assert!(parse_bytes("9Qi").is_err());
    }

    #[test]
    fn pairs() {
        assert_eq!(parse_pair("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_pair("=x").is_err());
        assert!(parse_pair("nothing").is_err());
    }
}
