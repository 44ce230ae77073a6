//! Spark versions and what a step may ask for.

use std::fmt;
use std::str::FromStr;

use crate::SparkError;

/// An exact Spark version, `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SparkVersion {
    /// `3` of 3.5.9.
    pub major: u32,
    /// `5` of 3.5.9.
    pub minor: u32,
    /// `9` of 3.5.9.
    pub patch: u32,
}

impl fmt::Display for SparkVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for SparkVersion {
    type Err = SparkError;

    /// Takes `3.5.9`, and also the suffixed forms distributions print
    /// (`3.5.9-SNAPSHOT`, `4.0.0.dev1`), ignoring the suffix.
    fn from_str(s: &str) -> Result<SparkVersion, SparkError> {
        let bad = || SparkError::BadVersion {
            text: s.to_string(),
        };
        let mut it = s.trim().splitn(3, '.');
        let mut num = |last: bool| -> Result<u32, SparkError> {
            let part = it.next().ok_or_else(bad)?;
            let digits: &str = if last {
                let end = part
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(part.len());
                &part[..end]
            } else {
                part
            };
            digits.parse().map_err(|_| bad())
        };
        Ok(SparkVersion {
            major: num(false)?,
            minor: num(false)?,
            patch: num(true)?,
        })
    }
}

/// What a step or `kaon spark install` asks for: a major line (`4`,
/// `4.x`), a minor line (`3.5`, `3.5.x`), or an exact version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionReq {
    /// Any `N.*.*`.
    Major(u32),
    /// Any `N.M.*`.
    Minor(u32, u32),
    /// Exactly this one.
    Exact(SparkVersion),
}

impl FromStr for VersionReq {
    type Err = SparkError;

    fn from_str(s: &str) -> Result<VersionReq, SparkError> {
        let bad = || SparkError::BadVersion {
            text: s.to_string(),
        };
        let t = s.trim();
        let t = t
            .strip_suffix(".x")
            .or_else(|| t.strip_suffix(".*"))
            .unwrap_or(t);
        let parts: Vec<&str> = t.split('.').collect();
        let n = |p: &str| p.parse::<u32>().map_err(|_| bad());
        match parts.as_slice() {
            [m] => Ok(VersionReq::Major(n(m)?)),
            [m, i] => Ok(VersionReq::Minor(n(m)?, n(i)?)),
            [_, _, _] => Ok(VersionReq::Exact(t.parse()?)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for VersionReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionReq::Major(m) => write!(f, "{m}.x"),
            VersionReq::Minor(m, i) => write!(f, "{m}.{i}"),
            VersionReq::Exact(v) => write!(f, "{v}"),
        }
    }
}

impl VersionReq {
    /// True when `v` satisfies the request.
    pub fn matches(&self, v: &SparkVersion) -> bool {
        match *self {
            VersionReq::Major(m) => v.major == m,
            VersionReq::Minor(m, i) => v.major == m && v.minor == i,
            VersionReq::Exact(e) => *v == e,
        }
    }

    /// The pip requirement that installs the newest matching `pyspark`.
    pub fn pip_requirement(&self) -> String {
        match *self {
            VersionReq::Major(m) => format!("pyspark>={m},<{}", m + 1),
            VersionReq::Minor(m, i) => format!("pyspark=={m}.{i}.*"),
            VersionReq::Exact(v) => format!("pyspark=={v}"),
        }
    }

    /// The major version every match has.
    pub fn major(&self) -> u32 {
        match *self {
            VersionReq::Major(m) | VersionReq::Minor(m, _) => m,
            VersionReq::Exact(v) => v.major,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
    use super::*;

    #[test]
    fn requests_match_and_install() {
        let v: SparkVersion = "3.5.9".parse().unwrap();
        let r: VersionReq = "3.5".parse().unwrap();
        assert!(r.matches(&v));
        assert!(!"3.4".parse::<VersionReq>().unwrap().matches(&v));
        assert!("3.x".parse::<VersionReq>().unwrap().matches(&v));
        assert!("3.5.9".parse::<VersionReq>().unwrap().matches(&v));
        assert!(!"3.5.8".parse::<VersionReq>().unwrap().matches(&v));
        assert_eq!(
            "4.x".parse::<VersionReq>().unwrap().pip_requirement(),
            "pyspark>=4,<5"
        );
        assert_eq!(r.pip_requirement(), "pyspark==3.5.*");
        assert_eq!(
            "4.0.0.dev1".parse::<SparkVersion>().unwrap().to_string(),
            "4.0.0"
        );
        for bad in ["", "x", "3.5.9.1.2", "3..1", "three"] {
            assert!(bad.parse::<VersionReq>().is_err(), "{bad}");
        }
        assert!(
            "3.5.10".parse::<SparkVersion>().unwrap() > "3.5.9".parse::<SparkVersion>().unwrap()
        );
    }
}
