//! The server's own settings, which are not per workload: the cluster's NodePort range and the
//! image of the properties adapter's init container.

use std::fmt;
use std::str::FromStr;

/// kube-apiserver's default `--service-node-port-range`.
pub const DEFAULT_NODE_PORT_RANGE: NodePortRange = NodePortRange {
    start: 30000,
    end: 32767,
};

/// Server-wide settings that are not per workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The cluster's NodePort range (kube-apiserver `--service-node-port-range`).
    pub node_port_range: NodePortRange,
    /// Image of the properties adapter's init container: kafka-expose's own image by default.
    pub patcher_image: String,
    /// The most ports (listeners) a shared load balancer takes in this cluster's cloud, for
    /// workloads that do not set `load-balancer-max-ports`.
    pub lb_max_ports: Option<u16>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            node_port_range: DEFAULT_NODE_PORT_RANGE,
            patcher_image: default_patcher_image(),
            lb_max_ports: None,
        }
    }
}

/// kafka-expose's own image, at the version of this build.
pub fn default_patcher_image() -> String {
    format!(
        "{}:{}",
        crate::names::IMAGE_REPOSITORY,
        env!("CARGO_PKG_VERSION")
    )
}

/// An inclusive range of ports, as kube-apiserver's `--service-node-port-range` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePortRange {
    pub start: u16,
    pub end: u16,
}

impl NodePortRange {
    pub fn contains(&self, port: u32) -> bool {
        (self.start as u32..=self.end as u32).contains(&port)
    }
}

impl fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl FromStr for NodePortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not a port range like 30000-32767"))?;
        let start: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a port number"))?;
        let end: u16 = b
            .trim()
            .parse()
            .map_err(|_| format!("{b:?} is not a port number"))?;
        if start == 0 || start > end {
            return Err(format!("{s:?} is not a range of ports from low to high"));
        }
        Ok(Self { start, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_port_ranges_parse_like_the_apiserver_flag() {
        assert_eq!(
            "30000-32767".parse::<NodePortRange>().unwrap(),
            DEFAULT_NODE_PORT_RANGE
        );
        assert!("32767-30000".parse::<NodePortRange>().is_err());
        assert!("abc".parse::<NodePortRange>().is_err());
    }
}
