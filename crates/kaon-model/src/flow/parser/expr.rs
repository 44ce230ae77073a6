//! Conditions (`until = ...`, `??( )`, `when( )`) and literal values.

use super::{MAX_CONDITION_OPERATORS, Nest, PResult, Parser};
use crate::diag::Code;
use crate::expr::{BinOp, Expr, Lit, Ref};
use crate::flow::lexer::TokenKind;

impl Parser<'_> {
    pub(super) fn literal(&mut self) -> Option<Lit> {
        let lit = match self.peek() {
            TokenKind::Str(s) => Lit::Str(s.clone()),
            TokenKind::Int(i) => Lit::Int(*i),
            TokenKind::Float(f) => Lit::Float(*f),
            TokenKind::Ident(w) if w == "true" => Lit::Bool(true),
            TokenKind::Ident(w) if w == "false" => Lit::Bool(false),
            TokenKind::Ident(w) if w == "null" => Lit::Null,
            _ => return None,
        };
        self.bump();
        Some(lit)
    }

    /// A whole condition: of `until = `, `??( )` or `when( )`.
    pub(super) fn condition(&mut self) -> PResult<Expr> {
        self.cond_ops = 0;
        self.expr_prec(1)
    }

    fn binop(&self) -> Option<BinOp> {
        Some(match self.peek() {
            TokenKind::OrOr => BinOp::Or,
            TokenKind::AndAnd => BinOp::And,
            TokenKind::EqEq => BinOp::Eq,
            TokenKind::Ne => BinOp::Ne,
            TokenKind::Lt => BinOp::Lt,
            TokenKind::Le => BinOp::Le,
            TokenKind::Gt => BinOp::Gt,
            TokenKind::Ge => BinOp::Ge,
            _ => return None,
        })
    }

    fn expr_prec(&mut self, min: u8) -> PResult<Expr> {
        let mut left = self.unary()?;
        while let Some(op) = self.binop() {
            let p = op.precedence();
            if p < min {
                break;
            }
            let op_tok = self.bump();
            self.cond_ops += 1;
            if self.cond_ops > MAX_CONDITION_OPERATORS {
                return Err(self
                    .error_at(
                        Code::FlowSyntax,
                        self.span(&op_tok),
                        format!("the condition has more than {MAX_CONDITION_OPERATORS} operators"),
                    )
                    .help("for an involved decision, let a step make it and test its output, e.g. `${decide.go}`"));
            }
            let right = if op.is_comparison() {
                self.unary()?
            } else {
                self.expr_prec(p + 1)?
            };
            if op.is_comparison() && self.binop().is_some_and(BinOp::is_comparison) {
                return Err(self
                    .error_here(Code::FlowSyntax, "comparisons do not chain")
                    .related(self.span(&op_tok), "first comparison")
                    .help("join them with `&&`: `a < b && b < c`"));
            }
            left = Expr::Binary {
                left: Box::new(left),
                op,
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.peek() == &TokenKind::Bang {
            let bang = self.bump();
            self.enter(Nest::Condition, self.span(&bang))?;
            let operand = self.unary()?;
            self.leave(Nest::Condition);
            let span = self.span(&bang).to(operand.span());
            return Ok(Expr::Not {
                operand: Box::new(operand),
                span,
            });
        }
        if self.peek() == &TokenKind::LParen {
            let open = self.bump();
            self.enter(Nest::Condition, self.span(&open))?;
            let inner = self.expr_prec(1)?;
            self.leave(Nest::Condition);
            if self.peek() != &TokenKind::RParen {
                return Err(self
                    .error_here(
                        Code::FlowSyntax,
                        format!(
                            "expected `)` in the condition, found {}",
                            self.peek().describe()
                        ),
                    )
                    .related(self.span(&open), "opened here"));
            }
            self.bump();
            return Ok(inner);
        }
        if let TokenKind::Ref(path) = self.peek().clone() {
            let t = self.bump();
            return Ok(Expr::Ref {
                r: Ref {
                    path,
                    span: self.span(&t),
                },
            });
        }
        let span = self.here();
        if let Some(value) = self.literal() {
            return Ok(Expr::Lit { value, span });
        }
        let err = match self.peek() {
            TokenKind::Ident(name) => self
                .error_here(Code::FlowSyntax, format!("bare name `{name}` in a condition"))
                .help(format!(
                    "write `${{{name}}}` for a loop variable, `${{params.{name}}}` for a parameter, or `\"{name}\"` for text"
                )),
            other => self.error_here(
                Code::FlowSyntax,
                format!("expected a value in the condition, found {}", other.describe()),
            ),
        };
        Err(err)
    }
}
