//! Inputs shaped into long chains and deep nests (issue 12, defect 6), which
//! random bytes almost never spell: the first byte picks a shape, the next
//! few its size and variant, and the rest is fuzz text spliced into it.
//!
//! | first byte % 4 | shape |
//! |---|---|
//! | 0, 1 | the rest as it is |
//! | 2 | a chain of up to 100,000 steps, in either notation |
//! | 3 | blocks, groups or a condition nested up to 10,000 deep |

// Each target uses part of this module.
#![allow(dead_code)]

/// A flow and the steps it uses (all to be declared).
pub struct Shaped {
    pub flow: String,
    pub steps: Vec<String>,
    /// Put the fuzz text into the step declarations rather than the flow.
    pub splice_in_steps: Option<(usize, String)>,
    /// Command steps that read the output of the step before them.
    pub reads: bool,
}

/// What a shaped input is, or the raw text.
pub enum Input {
    Raw(String),
    Shaped(Shaped),
}

/// A size spread evenly over orders of magnitude, from 1 to `max`.
fn size(exp: u8, frac: u8, max: usize) -> usize {
    let exp = u32::from(exp) % (usize::BITS - max.leading_zeros() + 1);
    let base = 1usize << exp;
    (base + base * usize::from(frac) / 256).min(max)
}

/// The fuzz text to splice in: control characters, which TOML refuses in
/// the flow's string, become spaces.
fn splice_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

fn take<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut head = [0u8; N];
    let n = data.len().min(N);
    head[..n].copy_from_slice(&data[..n]);
    (head, &data[n..])
}

pub fn input(data: &[u8]) -> Input {
    let Some((&mode, rest)) = data.split_first() else {
        return Input::Raw(String::new());
    };
    match mode % 4 {
        2 => Input::Shaped(chain(rest)),
        3 => Input::Shaped(nest(rest)),
        _ => Input::Raw(String::from_utf8_lossy(rest).into_owned()),
    }
}

/// `s0 -> s1 -> ...` or `sequence(s0, s1, ...)`, every fifth element a small
/// block when asked, with the fuzz text after element `at`.
fn chain(data: &[u8]) -> Shaped {
    let ([exp, frac, flags, at_lo, at_hi], fuzz) = take::<5>(data);
    let n = size(exp, frac, 100_000);
    let at = usize::from(u16::from_le_bytes([at_lo, at_hi])) % (n + 1);
    let fuzz = splice_text(fuzz);
    let verbs = flags & 1 != 0;
    let in_steps = flags & 2 != 0;
    let blocks = flags & 4 != 0;
    let mut steps = Vec::with_capacity(n + n / 5);
    let mut items = Vec::with_capacity(n);
    for i in 0..n {
        steps.push(format!("s{i}"));
        let item = if blocks && i % 5 == 4 {
            steps.push(format!("t{i}"));
            match (verbs, i % 3) {
                (false, 0) => format!("==> (s{i}, t{i}) >=="),
                (false, 1) => format!("**(x = [1, 2]) --< (s{i}, t{i}) >--"),
                (false, _) => format!("??(true) --< (s{i} | t{i}) >--"),
                (true, 0) => format!("parallel {{ s{i} t{i} }} parallel"),
                (true, 1) => format!("forEach(x = [1, 2]) sequence(s{i}, t{i}) forEach"),
                (true, _) => format!("when(true) s{i} otherwise t{i} when"),
            }
        } else {
            format!("s{i}")
        };
        items.push(item);
    }
    if !in_steps && !fuzz.is_empty() {
        match items.get_mut(at) {
            Some(item) => item.push_str(&fuzz),
            None => items.push(fuzz.clone()),
        }
    }
    let flow = if verbs {
        format!("sequence({})", items.join(", "))
    } else {
        items.join(" -> ")
    };
    Shaped {
        flow,
        splice_in_steps: in_steps.then_some((at, fuzz)),
        reads: flags & 8 != 0,
        steps,
    }
}

/// One level of nesting: the text before and after what it wraps.
fn level(kind: u8, k: usize) -> (String, String) {
    match kind % 10 {
        0 => (format!("p{k} ==> ("), format!(", q{k}) >==")),
        1 => (format!("p{k} **(v{k} = [1]) --< ("), ") >--".into()),
        2 => (
            format!("p{k} ^^(until = true, max = 1) --< ("),
            ") >--".into(),
        ),
        3 => (format!("p{k} ??(true) --< ("), format!(" | q{k}) >--")),
        4 => (
            format!("sequence(p{k}, parallel {{ "),
            format!(", q{k} }} parallel)"),
        ),
        5 => (
            format!("sequence(p{k}, forEach(v{k} = [1]) "),
            " forEach)".into(),
        ),
        6 => (
            format!("sequence(p{k}, repeat(until = true, max = 1) "),
            " repeat)".into(),
        ),
        7 => (
            format!("sequence(p{k}, when(true) "),
            format!(" otherwise q{k} when)"),
        ),
        8 => ("(".into(), ")".into()),
        _ => ("sequence(".into(), ")".into()),
    }
}

/// Levels of one kind (or of kinds read from the fuzz text, one per level)
/// around `leaf`, or a condition nested or chained as deep; the fuzz text
/// goes in at level `at`.
fn nest(data: &[u8]) -> Shaped {
    let ([exp, frac, kind, at_lo, at_hi], fuzz) = take::<5>(data);
    let depth = size(exp, frac, 10_000);
    let at = usize::from(u16::from_le_bytes([at_lo, at_hi])) % (depth + 1);
    let text = splice_text(fuzz);
    let mut steps = vec!["leaf".to_string(), "last".to_string()];
    let flow = match kind % 16 {
        // Conditions: `!` and `(` nest, `||` and `&&` chain.
        k @ 12..=15 => {
            let mut cond = String::new();
            let (open, close, sep) = match k {
                12 => ("!", "", ""),
                13 => ("(", ")", ""),
                14 => ("", "", " || "),
                _ => ("(!", ")", " && "),
            };
            for i in 0..depth {
                if i == at {
                    cond.push_str(&text);
                }
                cond.push_str(open);
                if !sep.is_empty() {
                    cond.push_str("true");
                    cond.push_str(sep);
                }
            }
            cond.push_str("true");
            cond.push_str(&close.repeat(depth));
            format!("leaf ??({cond}) --< (last) >--")
        }
        k => {
            let mut open = String::new();
            let mut close = Vec::with_capacity(depth);
            for i in 0..depth {
                // 10 and 11: a kind per level, taken from the fuzz text.
                let kind = if k >= 10 {
                    fuzz.get(i % fuzz.len().max(1)).copied().unwrap_or(0)
                } else {
                    k
                };
                let (o, c) = level(kind, i);
                if kind % 10 < 8 {
                    steps.push(format!("p{i}"));
                    steps.push(format!("q{i}"));
                }
                if i == at {
                    open.push_str(&text);
                }
                open.push_str(&o);
                close.push(c);
            }
            if at == depth {
                open.push_str(&text);
            }
            open.push_str("leaf");
            close.reverse();
            open + &close.concat()
        }
    };
    Shaped {
        flow,
        steps,
        splice_in_steps: None,
        reads: false,
    }
}

/// The whole workflow file of a shaped input.
pub fn workflow(s: &Shaped) -> String {
    let mut t = format!("[workflow]\nname = \"fuzz\"\nflow = '''{}'''\n", s.flow);
    for (i, name) in s.steps.iter().enumerate() {
        if s.reads && i % 2 == 1 {
            let prev = &s.steps[i - 1];
            t.push_str(&format!(
                "\n[steps.{name}]\nkind = \"command\"\ncommand = [\"echo\", \"${{{prev}.v}}\"]\noutputs = {{ v = \"string\" }}\n"
            ));
        } else {
            t.push_str(&format!(
                "\n[steps.{name}]\nkind = \"command\"\ncommand = [\"true\"]\noutputs = {{ v = \"string\" }}\n"
            ));
        }
        if let Some((at, text)) = &s.splice_in_steps
            && *at == i
        {
            t.push_str(text);
            t.push('\n');
        }
    }
    t
}
