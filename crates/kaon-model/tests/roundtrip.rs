//! Property tests: any well-formed flow prints, in either notation, to text
//! that parses back to the same model; printing is idempotent.

use kaon_model::diag::{Span, StrMap};
use kaon_model::expr::{BinOp, Expr, Lit, Ref};
use kaon_model::flow::{
    Binding, Flow, FlowKind, Ident, ListSource, Notation, parse_flow, print_flow,
};
use proptest::prelude::*;

fn ident(name: &str) -> Ident {
    Ident {
        name: name.to_string(),
        span: Span::default(),
    }
}

fn step_name() -> impl Strategy<Value = String> {
    // Avoid reserved words: prefix keeps generated names valid.
    "s[a-z0-9_]{0,6}".prop_map(String::from)
}

fn reference() -> impl Strategy<Value = Ref> {
    prop::collection::vec("[a-z][a-z0-9_]{0,4}", 1..4).prop_map(|path| Ref {
        path,
        span: Span::default(),
    })
}

fn lit() -> impl Strategy<Value = Lit> {
    prop_oneof![
        "[ -~]{0,8}".prop_map(Lit::Str),
        any::<i32>().prop_map(|i| Lit::Int(i64::from(i))),
        (-1.0e6f64..1.0e6).prop_map(|f| Lit::Float((f * 100.0).round() / 100.0)),
        any::<bool>().prop_map(Lit::Bool),
        Just(Lit::Null),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        lit().prop_map(|value| Expr::Lit {
            value,
            span: Span::default()
        }),
        reference().prop_map(|r| Expr::Ref { r }),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        let ops = prop_oneof![
            Just(BinOp::Or),
            Just(BinOp::And),
            Just(BinOp::Eq),
            Just(BinOp::Ne),
            Just(BinOp::Lt),
            Just(BinOp::Le),
            Just(BinOp::Gt),
            Just(BinOp::Ge),
        ];
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not {
                operand: Box::new(e),
                span: Span::default()
            }),
            (inner.clone(), ops, inner).prop_map(|(l, op, r)| {
                // Comparisons do not chain: the grammar only allows plain
                // operands on both sides of one.
                let wrap = |e: Expr| match (&e, op.is_comparison()) {
                    (Expr::Binary { op: inner_op, .. }, true) if inner_op.is_comparison() => {
                        Expr::Not {
                            operand: Box::new(e),
                            span: Span::default(),
                        }
                    }
                    _ => e,
                };
                Expr::Binary {
                    left: Box::new(wrap(l)),
                    op,
                    right: Box::new(wrap(r)),
                }
            }),
        ]
    })
}

fn source() -> impl Strategy<Value = ListSource> {
    prop_oneof![
        "p[a-z0-9]{0,4}".prop_map(|n| ListSource::Param { name: ident(&n) }),
        reference().prop_map(|r| ListSource::Ref { r }),
        prop::collection::vec(lit(), 0..4).prop_map(|items| ListSource::Literal {
            items,
            span: Span::default()
        }),
    ]
}

fn flow() -> impl Strategy<Value = Flow> {
    let leaf = step_name().prop_map(|n| Flow::step(&n, Span::default()));
    leaf.prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..5)
                .prop_map(|items| Flow::sequence(items, Span::default())),
            prop::collection::vec(inner.clone(), 1..4).prop_map(|branches| Flow {
                kind: FlowKind::Parallel { branches },
                span: Span::default()
            }),
            (
                prop::collection::vec(("v[a-z0-9]{0,3}", source()), 1..3),
                inner.clone()
            )
                .prop_map(|(bs, body)| Flow {
                    kind: FlowKind::ForEach {
                        bindings: bs
                            .into_iter()
                            .map(|(v, source)| Binding {
                                var: ident(&v),
                                source
                            })
                            .collect(),
                        body: Box::new(body)
                    },
                    span: Span::default()
                }),
            (expr(), 1u32..100, inner.clone()).prop_map(|(until, max, body)| Flow {
                kind: FlowKind::Repeat {
                    until,
                    max,
                    body: Box::new(body)
                },
                span: Span::default()
            }),
            (expr(), inner.clone(), prop::option::of(inner)).prop_map(|(cond, then, otherwise)| {
                Flow {
                    kind: FlowKind::When {
                        cond,
                        then: Box::new(then),
                        otherwise: otherwise.map(Box::new),
                    },
                    span: Span::default(),
                }
            }),
        ]
    })
}

fn reparse(text: &str) -> Flow {
    parse_flow(text, &StrMap::identity())
        .unwrap_or_else(|e| panic!("printed flow does not parse: {e:?}\n{text}"))
        .without_spans()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn printed_flows_reparse_to_the_same_model(f in flow()) {
        let f = f.without_spans();
        for notation in [Notation::Operators, Notation::Verbs] {
            let text = print_flow(&f, notation);
            let back = reparse(&text);
            prop_assert_eq!(&back, &f, "{:?}:\n{}", notation, text);
            prop_assert_eq!(print_flow(&back, notation), text);
        }
    }

    #[test]
    fn the_two_notations_agree(f in flow()) {
        let ops = reparse(&print_flow(&f, Notation::Operators));
        let verbs = reparse(&print_flow(&f, Notation::Verbs));
        prop_assert_eq!(ops, verbs);
    }

    #[test]
    fn the_parser_never_panics(s in "[a-z(){}<>=*^?|,\\-$. \n\"\\[\\]!&0-9]{0,80}") {
        let _ = parse_flow(&s, &StrMap::identity());
    }
}
