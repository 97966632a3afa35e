//! JMS message selectors (the SQL-92 subset of the JMS spec) as ActiveMQ
//! users write them in a STOMP SUBSCRIBE's `selector` header:
//! `type = 'order' AND (priority > 5 OR region IN ('eu', 'us'))`.
//!
//! Comparisons, `AND`/`OR`/`NOT` with SQL's three-valued logic (a missing
//! property is NULL and makes a comparison unknown, which never matches),
//! arithmetic, `BETWEEN`, `IN`, `LIKE ... ESCAPE`, `IS [NOT] NULL`, and the
//! headers `JMSMessageID`, `JMSCorrelationID`, `JMSPriority`, `JMSTimestamp`,
//! `JMSExpiration`, `JMSDeliveryMode`, `JMSType`. STOMP headers arrive as
//! strings; a string that reads as a number compares as one with a number
//! (ActiveMQ's STOMP users otherwise trip over `price > 10` never matching).

use crate::message::{Message, PropertyValue};
use std::fmt;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid selector at character {position}: {message}")]
pub struct SelectorError {
    pub position: usize,
    pub message: String,
}

/// A parsed selector.
#[derive(Debug, Clone)]
pub struct Selector {
    text: String,
    expr: Expr,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let tokens = tokenize(text)?;
        if tokens.len() > MAX_TOKENS {
            return Err(SelectorError {
                position: tokens[MAX_TOKENS].0,
                message: format!("longer than {MAX_TOKENS} tokens"),
            });
        }
        let mut p = Parser {
            tokens,
            at: 0,
            end: text.len(),
            depth: 0,
        };
        let expr = p.or()?;
        if let Some((pos, t)) = p.tokens.get(p.at) {
            return Err(SelectorError {
                position: *pos,
                message: format!("unexpected {t}"),
            });
        }
        Ok(Selector {
            text: text.to_owned(),
            expr,
        })
    }

    /// Whether `m` is selected (unknown counts as not selected).
    pub fn matches(&self, m: &Message) -> bool {
        truth(&eval(&self.expr, m)) == Some(true)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone)]
enum Expr {
    Lit(Value),
    Ident(String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    Between {
        e: Box<Expr>,
        lo: Box<Expr>,
        hi: Box<Expr>,
        negated: bool,
    },
    In {
        e: Box<Expr>,
        list: Vec<String>,
        negated: bool,
    },
    Like {
        e: Box<Expr>,
        pattern: Vec<LikePart>,
        negated: bool,
    },
    IsNull {
        e: Box<Expr>,
        negated: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum LikePart {
    Char(char),
    /// `_`
    One,
    /// `%`
    Any,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(f64),
    Sym(&'static str),
    /// Upper-cased keyword.
    Kw(&'static str),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(s) => write!(f, "identifier {s}"),
            Token::Str(s) => write!(f, "string '{s}'"),
            Token::Num(n) => write!(f, "number {n}"),
            Token::Sym(s) | Token::Kw(s) => write!(f, "{s:?}"),
        }
    }
}

const KEYWORDS: [&str; 11] = [
    "AND", "OR", "NOT", "BETWEEN", "IN", "LIKE", "ESCAPE", "IS", "NULL", "TRUE", "FALSE",
];
const SYMBOLS: [&str; 13] = [
    "<>", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "(", ")", ",",
];

fn tokenize(s: &str) -> Result<Vec<(usize, Token)>, SelectorError> {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |position: usize, message: String| SelectorError { position, message };
    while i < chars.len() {
        let (pos, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut text = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err(pos, "unterminated string".into())),
                    Some((_, '\'')) if matches!(chars.get(i + 1), Some((_, '\''))) => {
                        text.push('\'');
                        i += 2;
                    }
                    Some((_, '\'')) => {
                        i += 1;
                        break;
                    }
                    Some((_, ch)) => {
                        text.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push((pos, Token::Str(text)));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|(_, d)| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len()
                && (chars[i].1.is_ascii_alphanumeric()
                    || chars[i].1 == '.'
                    || ((chars[i].1 == '+' || chars[i].1 == '-')
                        && matches!(chars[i - 1].1, 'e' | 'E')))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().map(|(_, c)| c).collect();
            let trimmed = text.trim_end_matches(['l', 'L', 'f', 'F', 'd', 'D']);
            let n = trimmed
                .parse::<f64>()
                .map_err(|_| err(pos, format!("invalid number {text}")))?;
            out.push((pos, Token::Num(n)));
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].1.is_alphanumeric() || matches!(chars[i].1, '_' | '$' | '.'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().map(|(_, c)| c).collect();
            let upper = word.to_ascii_uppercase();
            match KEYWORDS.iter().find(|k| **k == upper) {
                Some(k) => out.push((pos, Token::Kw(k))),
                None => out.push((pos, Token::Ident(word))),
            }
        } else {
            let rest = &s[pos..];
            let sym = SYMBOLS
                .iter()
                .find(|sym| rest.starts_with(**sym))
                .ok_or_else(|| err(pos, format!("unexpected character {c:?}")))?;
            out.push((pos, Token::Sym(sym)));
            i += sym.chars().count();
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    /// Length of the text, where "at the end" errors point.
    end: usize,
    /// Nesting of parentheses, NOT and signs: bounded so that no selector
    /// can exhaust the stack.
    depth: usize,
}

/// Bounds on a selector's size and nesting.
const MAX_TOKENS: usize = 1000;
const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn eat(&mut self, t: &Token) -> bool {
        if self.peek() == Some(t) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn error(&self, expected: &str) -> SelectorError {
        match self.tokens.get(self.at) {
            Some((position, t)) => SelectorError {
                position: *position,
                message: format!("expected {expected}, found {t}"),
            },
            None => SelectorError {
                position: self.end,
                message: format!("expected {expected} at the end"),
            },
        }
    }

    fn nest(&mut self) -> Result<(), SelectorError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SelectorError {
                position: self.tokens.get(self.at).map_or(self.end, |(p, _)| *p),
                message: format!("nested more than {MAX_DEPTH} levels deep"),
            });
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, SelectorError> {
        self.nest()?;
        let mut e = self.and()?;
        while self.eat(&Token::Kw("OR")) {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, SelectorError> {
        let mut e = self.not()?;
        while self.eat(&Token::Kw("AND")) {
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, SelectorError> {
        if self.eat(&Token::Kw("NOT")) {
            self.nest()?;
            let e = Expr::Not(Box::new(self.not()?));
            self.depth -= 1;
            return Ok(e);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, SelectorError> {
        let e = self.additive()?;
        let op = match self.peek() {
            Some(Token::Sym("=")) => Some(Op::Eq),
            Some(Token::Sym("<>")) => Some(Op::Ne),
            Some(Token::Sym("<")) => Some(Op::Lt),
            Some(Token::Sym("<=")) => Some(Op::Le),
            Some(Token::Sym(">")) => Some(Op::Gt),
            Some(Token::Sym(">=")) => Some(Op::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.at += 1;
            return Ok(Expr::Bin(op, Box::new(e), Box::new(self.additive()?)));
        }
        if self.eat(&Token::Kw("IS")) {
            let negated = self.eat(&Token::Kw("NOT"));
            if !self.eat(&Token::Kw("NULL")) {
                return Err(self.error("NULL"));
            }
            return Ok(Expr::IsNull {
                e: Box::new(e),
                negated,
            });
        }
        let negated = self.eat(&Token::Kw("NOT"));
        if self.eat(&Token::Kw("BETWEEN")) {
            let lo = self.additive()?;
            if !self.eat(&Token::Kw("AND")) {
                return Err(self.error("AND"));
            }
            let hi = self.additive()?;
            return Ok(Expr::Between {
                e: Box::new(e),
                lo: Box::new(lo),
                hi: Box::new(hi),
                negated,
            });
        }
        if self.eat(&Token::Kw("IN")) {
            if !self.eat(&Token::Sym("(")) {
                return Err(self.error("("));
            }
            let mut list = Vec::new();
            loop {
                match self.tokens.get(self.at) {
                    Some((_, Token::Str(s))) => {
                        list.push(s.clone());
                        self.at += 1;
                    }
                    _ => return Err(self.error("a string")),
                }
                if self.eat(&Token::Sym(")")) {
                    break;
                }
                if !self.eat(&Token::Sym(",")) {
                    return Err(self.error("',' or ')'"));
                }
            }
            return Ok(Expr::In {
                e: Box::new(e),
                list,
                negated,
            });
        }
        if self.eat(&Token::Kw("LIKE")) {
            let Some((_, Token::Str(pattern))) = self.tokens.get(self.at).cloned() else {
                return Err(self.error("a pattern string"));
            };
            self.at += 1;
            let mut escape = None;
            if self.eat(&Token::Kw("ESCAPE")) {
                match self.tokens.get(self.at) {
                    Some((_, Token::Str(s))) if s.chars().count() == 1 => {
                        escape = s.chars().next();
                        self.at += 1;
                    }
                    _ => return Err(self.error("a one-character escape string")),
                }
            }
            return Ok(Expr::Like {
                e: Box::new(e),
                pattern: like_pattern(&pattern, escape),
                negated,
            });
        }
        if negated {
            return Err(self.error("BETWEEN, IN or LIKE after NOT"));
        }
        Ok(e)
    }

    fn additive(&mut self) -> Result<Expr, SelectorError> {
        let mut e = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Some(Token::Sym("+")) => Op::Add,
                Some(Token::Sym("-")) => Op::Sub,
                _ => return Ok(e),
            };
            self.at += 1;
            e = Expr::Bin(op, Box::new(e), Box::new(self.multiplicative()?));
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, SelectorError> {
        let mut e = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Token::Sym("*")) => Op::Mul,
                Some(Token::Sym("/")) => Op::Div,
                _ => return Ok(e),
            };
            self.at += 1;
            e = Expr::Bin(op, Box::new(e), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, SelectorError> {
        if self.eat(&Token::Sym("-")) {
            self.nest()?;
            let e = Expr::Neg(Box::new(self.unary()?));
            self.depth -= 1;
            return Ok(e);
        }
        if self.eat(&Token::Sym("+")) {
            self.nest()?;
            let e = self.unary();
            self.depth -= 1;
            return e;
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, SelectorError> {
        let Some((_, t)) = self.tokens.get(self.at).cloned() else {
            return Err(self.error("a value"));
        };
        self.at += 1;
        match t {
            Token::Ident(name) => Ok(Expr::Ident(name)),
            Token::Str(s) => Ok(Expr::Lit(Value::Str(s))),
            Token::Num(n) => Ok(Expr::Lit(Value::Num(n))),
            Token::Kw("TRUE") => Ok(Expr::Lit(Value::Bool(true))),
            Token::Kw("FALSE") => Ok(Expr::Lit(Value::Bool(false))),
            Token::Kw("NULL") => Ok(Expr::Lit(Value::Null)),
            Token::Sym("(") => {
                let e = self.or()?;
                if !self.eat(&Token::Sym(")")) {
                    return Err(self.error("')'"));
                }
                Ok(e)
            }
            _ => {
                self.at -= 1;
                Err(self.error("a value"))
            }
        }
    }
}

fn like_pattern(p: &str, escape: Option<char>) -> Vec<LikePart> {
    let mut out = Vec::new();
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            if let Some(n) = chars.next() {
                out.push(LikePart::Char(n));
            }
        } else if c == '%' {
            out.push(LikePart::Any);
        } else if c == '_' {
            out.push(LikePart::One);
        } else {
            out.push(LikePart::Char(c));
        }
    }
    out
}

/// Wildcard matching with one backtrack point (the last `%`): linear in
/// practice, O(pattern × text) at worst, so no pattern can stall dispatch.
fn like_matches(p: &[LikePart], s: &[char]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(LikePart::Any) => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(LikePart::One) => {
                pi += 1;
                si += 1;
            }
            Some(LikePart::Char(c)) if *c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|part| *part == LikePart::Any)
}

fn lookup(name: &str, m: &Message) -> Value {
    match name {
        "JMSMessageID" => Value::Str(m.id.0.clone()),
        "JMSCorrelationID" => m
            .correlation_id
            .clone()
            .map(Value::Str)
            .unwrap_or(Value::Null),
        "JMSPriority" => Value::Num(m.priority.into()),
        "JMSTimestamp" => Value::Num(m.timestamp as f64),
        "JMSExpiration" => Value::Num(m.expires.unwrap_or(0) as f64),
        "JMSDeliveryMode" => Value::Str(
            if m.persistent {
                "PERSISTENT"
            } else {
                "NON_PERSISTENT"
            }
            .into(),
        ),
        "JMSType" => property(m, "type"),
        _ => property(m, name),
    }
}

fn property(m: &Message, name: &str) -> Value {
    match m.properties.get(name) {
        None => Value::Null,
        Some(PropertyValue::String(s)) => Value::Str(s.clone()),
        Some(PropertyValue::Bool(b)) => Value::Bool(*b),
        Some(PropertyValue::Int(i)) => Value::Num((*i).into()),
        Some(PropertyValue::Long(l)) => Value::Num(*l as f64),
        Some(PropertyValue::Double(d)) => Value::Num(*d),
        Some(PropertyValue::Bytes(_)) => Value::Null,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Num(n) => Some(*n),
        Value::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn from_truth(t: Option<bool>) -> Value {
    t.map(Value::Bool).unwrap_or(Value::Null)
}

fn compare(op: Op, a: &Value, b: &Value) -> Option<bool> {
    use std::cmp::Ordering::*;
    let ord = match (a, b) {
        (Value::Null, _) | (_, Value::Null) => return None,
        (Value::Str(x), Value::Str(y)) => {
            // Strings compare only for (in)equality in JMS.
            return match op {
                Op::Eq => Some(x == y),
                Op::Ne => Some(x != y),
                _ => None,
            };
        }
        (Value::Bool(x), Value::Bool(y)) => {
            return match op {
                Op::Eq => Some(x == y),
                Op::Ne => Some(x != y),
                _ => None,
            };
        }
        (Value::Bool(x), Value::Str(_)) | (Value::Str(_), Value::Bool(x)) => {
            let other = if matches!(a, Value::Bool(_)) { b } else { a };
            let y = truth(other)?;
            return match op {
                Op::Eq => Some(*x == y),
                Op::Ne => Some(*x != y),
                _ => None,
            };
        }
        _ => number(a)?.partial_cmp(&number(b)?)?,
    };
    Some(match op {
        Op::Eq => ord == Equal,
        Op::Ne => ord != Equal,
        Op::Lt => ord == Less,
        Op::Le => ord != Greater,
        Op::Gt => ord == Greater,
        Op::Ge => ord != Less,
        _ => unreachable!("arithmetic is not a comparison"),
    })
}

fn eval(e: &Expr, m: &Message) -> Value {
    match e {
        Expr::Lit(v) => v.clone(),
        Expr::Ident(name) => lookup(name, m),
        Expr::Not(x) => from_truth(truth(&eval(x, m)).map(|b| !b)),
        Expr::And(a, b) => match (truth(&eval(a, m)), truth(&eval(b, m))) {
            (Some(false), _) | (_, Some(false)) => Value::Bool(false),
            (Some(true), Some(true)) => Value::Bool(true),
            _ => Value::Null,
        },
        Expr::Or(a, b) => match (truth(&eval(a, m)), truth(&eval(b, m))) {
            (Some(true), _) | (_, Some(true)) => Value::Bool(true),
            (Some(false), Some(false)) => Value::Bool(false),
            _ => Value::Null,
        },
        Expr::Neg(x) => number(&eval(x, m))
            .map(|n| Value::Num(-n))
            .unwrap_or(Value::Null),
        Expr::Bin(op, a, b) => {
            let (a, b) = (eval(a, m), eval(b, m));
            match op {
                Op::Add | Op::Sub | Op::Mul | Op::Div => match (number(&a), number(&b)) {
                    (Some(x), Some(y)) => Value::Num(match op {
                        Op::Add => x + y,
                        Op::Sub => x - y,
                        Op::Mul => x * y,
                        _ => x / y,
                    }),
                    _ => Value::Null,
                },
                _ => from_truth(compare(*op, &a, &b)),
            }
        }
        Expr::Between { e, lo, hi, negated } => {
            let v = eval(e, m);
            let inside = match (
                compare(Op::Ge, &v, &eval(lo, m)),
                compare(Op::Le, &v, &eval(hi, m)),
            ) {
                (Some(a), Some(b)) => Some(a && b),
                _ => None,
            };
            from_truth(inside.map(|b| b != *negated))
        }
        Expr::In { e, list, negated } => match eval(e, m) {
            Value::Str(s) => Value::Bool(list.contains(&s) != *negated),
            _ => Value::Null,
        },
        Expr::Like {
            e,
            pattern,
            negated,
        } => match eval(e, m) {
            Value::Str(s) => {
                let chars: Vec<char> = s.chars().collect();
                Value::Bool(like_matches(pattern, &chars) != *negated)
            }
            _ => Value::Null,
        },
        Expr::IsNull { e, negated } => Value::Bool((eval(e, m) == Value::Null) != *negated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Destination, MessageId};
    use bytes::Bytes;

    fn msg(props: &[(&str, PropertyValue)]) -> Message {
        Message {
            id: MessageId("ID:1".into()),
            destination: Destination::Queue("q".into()),
            persistent: true,
            priority: 7,
            expires: None,
            timestamp: 1000,
            reply_to: None,
            correlation_id: Some("c1".into()),
            properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            body: Bytes::new(),
            redelivery_count: 0,
            broker_path: Vec::new(),
        }
    }

    fn s(v: &str) -> PropertyValue {
        PropertyValue::String(v.into())
    }

    #[test]
    fn evaluates_the_jms_subset() {
        let m = msg(&[
            ("type", s("order")),
            ("region", s("eu")),
            ("price", s("12.5")),
            ("qty", PropertyValue::Int(3)),
            ("vip", PropertyValue::Bool(true)),
            ("name", s("50% off_x")),
        ]);
        let yes = [
            "type = 'order'",
            "type = 'order' AND (price > 10 OR region = 'us')",
            "price * qty > 37 AND price * qty < 38",
            "qty BETWEEN 1 AND 3",
            "qty NOT BETWEEN 4 AND 9",
            "region IN ('eu', 'us')",
            "region NOT IN ('asia')",
            "name LIKE '50!% %' ESCAPE '!'",
            "name LIKE '%off\\_x' ESCAPE '\\'",
            "name LIKE '_0%'",
            "missing IS NULL",
            "region IS NOT NULL",
            "vip",
            "vip = TRUE",
            "NOT missing = 'x' OR TRUE",
            "JMSPriority > 5 AND JMSDeliveryMode = 'PERSISTENT'",
            "JMSCorrelationID = 'c1' and jmstype_is_not_special IS NULL",
            "-qty < 0",
            "qty = 3.0",
            "1e1 = 10",
        ];
        for sel in yes {
            assert!(Selector::parse(sel).unwrap().matches(&m), "{sel}");
        }
        let no = [
            "type = 'invoice'",
            "missing = 'x'",
            "NOT missing = 'x'",
            "missing > 1 OR missing < 1",
            "region > 'a'",
            "qty BETWEEN 4 AND 9",
            "name LIKE '50'",
            "vip = FALSE",
            "region IN ('us')",
        ];
        for sel in no {
            assert!(!Selector::parse(sel).unwrap().matches(&m), "{sel}");
        }
    }

    #[test]
    fn like_is_not_exponential() {
        let m = msg(&[("s", s(&"a".repeat(5000)))]);
        let sel = Selector::parse(&format!("s LIKE '{}b'", "%a".repeat(50))).unwrap();
        assert!(!sel.matches(&m));
        let sel = Selector::parse("s LIKE '%a%a%a%'").unwrap();
        assert!(sel.matches(&m));
    }

    #[test]
    fn deep_or_long_selectors_are_refused_not_crashed() {
        let deep = format!("{}a = 1{}", "(".repeat(200), ")".repeat(200));
        assert!(Selector::parse(&deep)
            .unwrap_err()
            .message
            .contains("nested"));
        let nots = format!("{}a = 1", "NOT ".repeat(5000));
        assert!(Selector::parse(&nots).is_err());
        let long = vec!["a = 1"; 600].join(" AND ");
        assert!(Selector::parse(&long)
            .unwrap_err()
            .message
            .contains("tokens"));
        let fine = vec!["a = 1"; 100].join(" AND ");
        assert!(Selector::parse(&fine).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn parsing_and_matching_never_panic(text in "[ -~]{0,60}") {
            if let Ok(sel) = Selector::parse(&text) {
                let _ = sel.matches(&msg(&[("a", s("1")), ("b", PropertyValue::Int(2))]));
            }
        }
    }

    #[test]
    fn syntax_errors_say_where() {
        for (sel, pos) in [
            ("type = ", 7),
            ("type = 'x", 7),
            ("a IN (1)", 6),
            ("(a = 1", 6),
            ("a = 1 b", 6),
            ("a # 1", 2),
            ("a NOT 1", 6),
        ] {
            let e = Selector::parse(sel).unwrap_err();
            assert_eq!(e.position, pos, "{sel}: {e}");
        }
    }
}
