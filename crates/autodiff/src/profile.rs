//! Per-node timings of a tape: where a training step's time goes.
//!
//! A tape made with [`Tape::profiled`](crate::Tape::profiled) records, for
//! every node, the time since the previous node was recorded (the op's
//! forward pass plus whatever the caller did in between, e.g. a layer's shape
//! checks) and the time its backward rule took. Ordinary tapes record nothing.
//! `examples/profile_step.rs` sums these per operation.

use std::time::{Duration, Instant};

/// Timings of one recorded node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTiming {
    /// The operation: its backward rule's type name without the module path
    /// and the `Backward` suffix (`Conv2d`, `BatchNorm`, ...), or `leaf`.
    pub op: String,
    /// Shape of the node's value.
    pub shape: Vec<usize>,
    /// Time since the previous node was recorded (the first node: since the
    /// tape was made).
    pub forward: Duration,
    /// Time of the node's backward rule (zero if it did not run).
    pub backward: Duration,
}

/// The timings of a profiled tape, one per node.
#[derive(Debug)]
pub(crate) struct Profile {
    last: Instant,
    pub(crate) nodes: Vec<NodeTiming>,
}

impl Profile {
    pub(crate) fn new() -> Profile {
        Profile {
            last: Instant::now(),
            nodes: Vec::new(),
        }
    }

    /// Records a node just pushed, with the type name of its rule (if any).
    pub(crate) fn record(&mut self, rule_type: Option<&str>, shape: &[usize]) {
        let now = Instant::now();
        let op = match rule_type {
            None => "leaf".to_string(),
            Some(name) => short_name(name),
        };
        self.nodes.push(NodeTiming {
            op,
            shape: shape.to_vec(),
            forward: now - self.last,
            backward: Duration::ZERO,
        });
        self.last = now;
    }
}

/// `bregman_autodiff::ops::conv2d::Conv2dBackward` → `Conv2d`;
/// `...::UnaryBackward<...::relu::Relu>` → `Relu`.
fn short_name(type_name: &str) -> String {
    let inner = match (type_name.find('<'), type_name.rfind('>')) {
        (Some(lo), Some(hi)) if lo < hi => &type_name[lo + 1..hi],
        _ => type_name,
    };
    let last = inner.rsplit("::").next().unwrap_or(inner);
    last.strip_suffix("Backward").unwrap_or(last).to_string()
}

#[cfg(test)]
mod tests {
    use super::short_name;

    #[test]
    fn short_names() {
        assert_eq!(
            short_name("bregman_autodiff::ops::conv2d::Conv2dBackward"),
            "Conv2d"
        );
        assert_eq!(
            short_name(
                "bregman_autodiff::ops::unary::UnaryBackward<bregman_autodiff::ops::relu::Relu>"
            ),
            "Relu"
        );
        assert_eq!(short_name("Plain"), "Plain");
    }
}
