//! The canonical text of a flow, in either notation.
//!
//! `parse(print(f)) == f` for every normalised flow, and printing is
//! idempotent: `print(parse(print(f))) == print(f)`. Property tests hold both.

use crate::expr::Lit;
use crate::flow::{Binding, Flow, FlowKind, ListSource};

/// Which notation to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notation {
    /// Meson's operators: `a -> b ==> (c, d) >== e`.
    Operators,
    /// Meson's verbs: `sequence(a, b) parallel { c d } parallel e`.
    Verbs,
}

/// Lines longer than this are broken after an arrow or a comma.
const WIDTH: usize = 100;
const INDENT: &str = "  ";

/// Prints a flow canonically, ending with a newline.
pub fn print_flow(flow: &Flow, notation: Notation) -> String {
    let mut p = Printer { out: String::new() };
    match notation {
        Notation::Operators => p.op_chain(flow.items(), 0),
        Notation::Verbs => p.v_elem(flow, 0),
    }
    p.out.push('\n');
    p.out
}

struct Printer {
    out: String,
}

impl Printer {
    fn col(&self) -> usize {
        self.out.len() - self.out.rfind('\n').map_or(0, |i| i + 1)
    }

    fn newline(&mut self, indent: usize) {
        self.out.push('\n');
        for _ in 0..indent {
            self.out.push_str(INDENT);
        }
    }

    /// Writes `sep` then `next`, breaking the line first when `next` would
    /// run past the width.
    fn sep_then(&mut self, sep: &str, next_len: usize, indent: usize) {
        if self.col() + sep.len() + next_len > WIDTH && self.col() > indent * INDENT.len() {
            self.out.push_str(sep.trim_end());
            self.newline(indent);
        } else {
            self.out.push_str(sep);
        }
    }

    // ---- operators ----

    fn op_chain(&mut self, items: &[Flow], indent: usize) {
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                let prev_block = items[i - 1].is_block();
                let sep = if prev_block || item.is_block() {
                    " "
                } else {
                    " -> "
                };
                let len = match &item.kind {
                    FlowKind::Step { step } => step.name.len(),
                    _ => 4,
                };
                self.sep_then(sep, len, indent);
            }
            self.op_elem(item, indent);
        }
    }

    fn op_elem(&mut self, f: &Flow, indent: usize) {
        match &f.kind {
            FlowKind::Step { step } => self.out.push_str(&step.name),
            FlowKind::Sequence { items } => self.op_chain(items, indent),
            FlowKind::Parallel { branches } => {
                self.out.push_str("==> (");
                for (i, b) in branches.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.newline(indent + 1);
                    self.op_chain(b.items(), indent + 1);
                }
                self.newline(indent);
                self.out.push_str(") >==");
            }
            FlowKind::ForEach { bindings, body } => {
                self.out.push_str("**(");
                self.bindings(bindings);
                self.out.push_str(") ");
                self.op_body(body, None, indent);
            }
            FlowKind::Repeat { until, max, body } => {
                self.out
                    .push_str(&format!("^^(until = {until}, max = {max}) "));
                self.op_body(body, None, indent);
            }
            FlowKind::When {
                cond,
                then,
                otherwise,
            } => {
                self.out.push_str(&format!("??({cond}) "));
                self.op_body(then, otherwise.as_deref(), indent);
            }
        }
    }

    /// `--< (a, b) >--`: a short list of plain steps stays on one line,
    /// anything else goes on its own lines as a chain.
    fn op_body(&mut self, body: &Flow, otherwise: Option<&Flow>, indent: usize) {
        self.out.push_str("--< (");
        let inline = |f: &Flow| -> Option<String> {
            let names: Option<Vec<&str>> = f
                .items()
                .iter()
                .map(|i| match &i.kind {
                    FlowKind::Step { step } => Some(step.name.as_str()),
                    _ => None,
                })
                .collect();
            names.map(|n| n.join(", "))
        };
        let parts = [Some(body), otherwise];
        let texts: Vec<Option<String>> = parts.iter().flatten().map(|f| inline(f)).collect();
        let total: usize = texts.iter().flatten().map(String::len).sum();
        if texts.iter().all(Option::is_some) && self.col() + total + 8 <= WIDTH {
            let t: Vec<String> = texts.into_iter().flatten().collect();
            self.out.push_str(&t.join(" | "));
            self.out.push_str(") >--");
            return;
        }
        for (i, part) in parts.iter().flatten().enumerate() {
            if i > 0 {
                self.newline(indent);
                self.out.push('|');
            }
            self.newline(indent + 1);
            self.op_chain(part.items(), indent + 1);
        }
        self.newline(indent);
        self.out.push_str(") >--");
    }

    fn bindings(&mut self, bindings: &[Binding]) {
        for (i, b) in bindings.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.out.push_str(&b.var.name);
            self.out.push_str(" = ");
            match &b.source {
                ListSource::Param { name } => self.out.push_str(&name.name),
                ListSource::Ref { r } => self.out.push_str(&r.to_string()),
                ListSource::Literal { items, .. } => {
                    let parts: Vec<String> = items.iter().map(Lit::to_string).collect();
                    self.out.push('[');
                    self.out.push_str(&parts.join(", "));
                    self.out.push(']');
                }
            }
        }
    }

    // ---- verbs ----
    //
    // Verbs are laid out by column rather than by indent level, so that the
    // items of `sequence(` line up under the first one, as in Meson's post.

    fn pad_to(&mut self, col: usize) {
        self.out.push('\n');
        self.out.push_str(&" ".repeat(col));
    }

    fn v_elem(&mut self, f: &Flow, base: usize) {
        match &f.kind {
            FlowKind::Step { step } => self.out.push_str(&step.name),
            FlowKind::Sequence { items } => {
                if items.iter().any(is_par) {
                    self.v_chain(items, base);
                } else {
                    self.v_list(items, base);
                }
            }
            FlowKind::Parallel { branches } => self.v_par(branches, base),
            FlowKind::ForEach { bindings, body } => {
                self.out.push_str("forEach(");
                self.bindings(bindings);
                self.out.push(')');
                self.v_block_body(body, None, base, "forEach");
            }
            FlowKind::Repeat { until, max, body } => {
                self.out
                    .push_str(&format!("repeat(until = {until}, max = {max})"));
                self.v_block_body(body, None, base, "repeat");
            }
            FlowKind::When {
                cond,
                then,
                otherwise,
            } => {
                self.out.push_str(&format!("when({cond})"));
                self.v_block_body(then, otherwise.as_deref(), base, "when");
            }
        }
    }

    /// ` body closer` on one line when the body is plain steps and fits;
    /// otherwise the body goes on its own lines, indented under the header.
    fn v_block_body(&mut self, body: &Flow, otherwise: Option<&Flow>, base: usize, closer: &str) {
        let plain = |f: &Flow| {
            f.items()
                .iter()
                .all(|i| matches!(i.kind, FlowKind::Step { .. }))
        };
        let inline_len: usize = [Some(body), otherwise]
            .iter()
            .flatten()
            .map(|f| f.items().iter().map(|i| step_len(i) + 2).sum::<usize>() + 10)
            .sum();
        let inline = plain(body)
            && otherwise.is_none_or(plain)
            && self.col() + inline_len + closer.len() <= WIDTH;
        if inline {
            self.out.push(' ');
            self.v_body(body, self.col());
            if let Some(o) = otherwise {
                self.out.push_str(" otherwise ");
                self.v_body(o, self.col());
            }
            self.out.push(' ');
        } else {
            self.pad_to(base + 2);
            self.v_body(body, base + 2);
            if let Some(o) = otherwise {
                self.pad_to(base);
                self.out.push_str("otherwise");
                self.pad_to(base + 2);
                self.v_body(o, base + 2);
            }
            self.pad_to(base);
        }
        self.out.push_str(closer);
    }

    /// A block body is one element; a lone block is wrapped in `sequence()`
    /// so that its closing keyword is not read as the outer one's.
    fn v_body(&mut self, body: &Flow, col: usize) {
        if body.is_block() {
            self.out.push_str("sequence(");
            self.v_elem(body, col + "sequence(".len());
            self.out.push(')');
        } else {
            self.v_elem(body, col);
        }
    }

    /// Meson's layout: runs of items as `sequence(...)`, parallel blocks
    /// between them.
    fn v_chain(&mut self, items: &[Flow], base: usize) {
        let mut i = 0;
        while i < items.len() {
            if i > 0 {
                self.out.push(' ');
            }
            if let FlowKind::Parallel { branches } = &items[i].kind {
                self.v_par(branches, base);
                i += 1;
                continue;
            }
            let end = items[i..]
                .iter()
                .position(is_par)
                .map_or(items.len(), |p| i + p);
            let run = &items[i..end];
            if run.len() == 1 {
                self.v_elem(&run[0], base);
            } else {
                self.v_list(run, self.col());
            }
            i = end;
        }
    }

    fn v_list(&mut self, items: &[Flow], _base: usize) {
        self.out.push_str("sequence(");
        let align = self.col();
        let multiline = items.iter().any(Flow::is_block);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
                if multiline || self.col() + 2 + step_len(item) > WIDTH {
                    self.pad_to(align);
                } else {
                    self.out.push(' ');
                }
            }
            self.v_elem(item, align);
        }
        self.out.push(')');
    }

    fn v_par(&mut self, branches: &[Flow], base: usize) {
        self.out.push_str("parallel {");
        for b in branches {
            self.pad_to(base + 2);
            // Branches are separated only by line breaks, so a branch must
            // not end in a block closer (it would take the next branch as its
            // successor): such branches are printed as `sequence(...)`.
            // Likewise a branch that starts with a block would be read as
            // the continuation of the branch before it.
            let items = b.items();
            let edge_block = items.last().is_some_and(Flow::is_block)
                || items.first().is_some_and(Flow::is_block);
            if b.is_block() {
                self.v_body(b, base + 2);
            } else if edge_block {
                self.v_list(b.items(), base + 2);
            } else {
                self.v_elem(b, base + 2);
            }
        }
        self.pad_to(base);
        self.out.push_str("} parallel");
    }
}

fn is_par(f: &Flow) -> bool {
    matches!(f.kind, FlowKind::Parallel { .. })
}

fn step_len(f: &Flow) -> usize {
    match &f.kind {
        FlowKind::Step { step } => step.name.len(),
        _ => WIDTH,
    }
}
