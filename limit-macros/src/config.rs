//! Validation: from the options as written to a configuration the
//! expansion can use without further checks.

use proc_macro2::Span;
use quote::ToTokens;
use syn::{Expr, ExprLit, ExprUnary, Ident, Lit, LitInt, LitStr, Path, UnOp};

use crate::args::{Errors, Opt, Slot};
use crate::duration::{self, Dur};
use crate::item::{Attr, Kind};
use crate::rate::{self, RateLit};

pub struct Config {
    pub krate: Path,
    /// Paths of the sibling attributes this expansion absorbed.
    pub absorbed: Vec<Path>,
    pub limited: Option<Limited>,
    pub retry: Option<Retry>,
    pub coalesce: Option<Coalesce>,
    pub timeout: Option<Timeout>,
    pub breaker: Option<Breaker>,
    /// The line each absorbed attribute is written on, when the compiler
    /// tells (see [`Config::line`]).
    pub lines: Vec<(Kind, u32)>,
}

impl Config {
    /// The line the attribute `kind` is written on, if it was absorbed by
    /// another one and the compiler gives spans' lines (Rust 1.88 and
    /// later). The runtime records a declaration's `file:line` with
    /// `#[track_caller]`, which sees the attribute being expanded: right
    /// for that one, but every attribute it absorbs would get its line.
    pub fn line(&self, kind: Kind) -> Option<u32> {
        self.lines.iter().find(|(k, _)| *k == kind).map(|(_, l)| *l)
    }
}

pub struct Timeout {
    pub attempt: Option<Dur>,
    pub total: Option<Dur>,
}

#[derive(Default)]
pub struct Breaker {
    pub name: Option<LitStr>,
    pub failure_rate: Option<f64>,
    pub min_calls: Option<Expr>,
    pub window: Option<Dur>,
    pub open_for: Option<Dur>,
    pub half_open: Option<Expr>,
    pub failure: Option<Expr>,
}

pub struct Limited {
    pub name: Option<LitStr>,
    /// `None`: no concurrency cap (only with `rate`).
    pub max: Option<Expr>,
    pub rate: Option<RateLit>,
    pub burst: Option<u32>,
    pub reserve: Option<Expr>,
    pub wait: Option<Dur>,
    pub queue: Option<usize>,
    /// The first option that can refuse a call (`wait` or `queue`), for the
    /// return-type requirement.
    pub refuses: Option<Ident>,
    pub adaptive: Option<Adaptive>,
}

pub struct Adaptive {
    pub min: Option<Expr>,
    pub initial: Option<Expr>,
    /// `fn(&E) -> bool`: errors that mean "overloaded".
    pub overload: Option<Expr>,
}

#[derive(Default)]
pub struct Retry {
    pub attempts: Option<Expr>,
    pub initial: Option<Dur>,
    pub multiplier: Option<f64>,
    pub max_delay: Option<Dur>,
    pub jitter: Option<Jitter>,
    pub max_elapsed: Option<Dur>,
    pub when: Option<Expr>,
    pub delay_hint: Option<Expr>,
    pub on_retry: Option<Expr>,
    pub policy: Option<Expr>,
}

pub struct Coalesce {
    pub key: Option<Expr>,
}

#[derive(Clone, Copy)]
pub enum Jitter {
    None,
    Full,
    Equal,
    Decorrelated,
}

impl Jitter {
    const NAMES: [(&'static str, Jitter); 4] = [
        ("none", Jitter::None),
        ("full", Jitter::Full),
        ("equal", Jitter::Equal),
        ("decorrelated", Jitter::Decorrelated),
    ];

    pub fn variant(self) -> &'static str {
        match self {
            Jitter::None => "None",
            Jitter::Full => "Full",
            Jitter::Equal => "Equal",
            Jitter::Decorrelated => "Decorrelated",
        }
    }
}

const LIMITED_KEYS: &[&str] = &[
    "name", "max", "rate", "burst", "wait", "queue", "reserve", "adaptive", "min", "initial",
    "overload", "crate",
];
const RETRY_KEYS: &[&str] = &[
    "attempts",
    "initial",
    "multiplier",
    "max_delay",
    "jitter",
    "max_elapsed",
    "when",
    "delay_hint",
    "on_retry",
    "policy",
    "crate",
];
const COALESCE_KEYS: &[&str] = &["key", "crate"];
const TIMEOUT_KEYS: &[&str] = &["attempt", "total", "crate"];
const BREAKER_KEYS: &[&str] = &[
    "name",
    "failure_rate",
    "min_calls",
    "window",
    "open_for",
    "half_open",
    "failure",
    "crate",
];

pub fn build(attrs: Vec<Attr>, errors: &mut Errors) -> Config {
    let mut krate: Option<(Path, String)> = None;
    let mut config = Config {
        krate: syn::parse_quote!(::limit_runtime),
        absorbed: Vec::new(),
        limited: None,
        retry: None,
        coalesce: None,
        timeout: None,
        breaker: None,
        lines: Vec::new(),
    };
    for attr in attrs {
        // Absorbed attributes have their path; line 0: not known.
        let line = attr.span.start().line;
        if attr.path.is_some() && line > 0 {
            config.lines.push((attr.kind, line as u32));
        }
        config.absorbed.extend(attr.path);
        let mut my_crate = Slot::default();
        let mut rest = Vec::new();
        for opt in attr.opts {
            if opt.key == "crate" {
                let key = opt.key.clone();
                my_crate.set_with(&key, errors, |errors| {
                    value(&opt, errors).and_then(|v| crate_path(v, errors))
                });
            } else {
                rest.push(opt);
            }
        }
        if let Some(path) = my_crate.get() {
            let text = path.to_token_stream().to_string();
            match &krate {
                Some((_, first)) if *first != text => errors.spanned(
                    &path,
                    format_args!(
                        "`crate` is `{first}` on another attribute of this function: use one path"
                    ),
                ),
                Some(_) => {}
                None => krate = Some((path, text)),
            }
        }
        match attr.kind {
            Kind::Limited => config.limited = limited(attr.span, rest, errors),
            Kind::Retry => config.retry = Some(retry(rest, errors)),
            Kind::Coalesce => config.coalesce = Some(coalesce(rest, errors)),
            Kind::Timeout => config.timeout = timeout(attr.span, rest, errors),
            Kind::CircuitBreaker => config.breaker = Some(breaker(rest, errors)),
        }
    }
    if let Some((path, _)) = krate {
        config.krate = path;
    }
    config
}

fn unknown(kind: Kind, key: &Ident, valid: &[&str], errors: &mut Errors) {
    let written = key.to_string();
    let list = valid
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let hint = valid
        .iter()
        .map(|k| (edit_distance(&written, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    errors.spanned(
        key,
        format_args!(
            "unknown option `{key}` for #[{}]: expected one of {list}{hint}",
            kind.name()
        ),
    );
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The value of `key = value`, or an error for a bare `key`.
fn value<'a>(opt: &'a Opt, errors: &mut Errors) -> Option<&'a Expr> {
    if opt.value.is_none() {
        let key = &opt.key;
        errors.spanned(
            key,
            format_args!("option `{key}` needs a value: write `{key} = ...`"),
        );
    }
    opt.value.as_ref()
}

fn lit(e: &Expr) -> Option<&Lit> {
    match e {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(g) => lit(&g.expr),
        _ => None,
    }
}

fn string(e: &Expr, key: &Ident, example: &str, errors: &mut Errors) -> Option<LitStr> {
    match lit(e) {
        Some(Lit::Str(s)) => Some(s.clone()),
        _ => {
            errors.spanned(
                e,
                format_args!("`{key}` takes a string literal, e.g. `{key} = {example}`"),
            );
            None
        }
    }
}

fn crate_path(e: &Expr, errors: &mut Errors) -> Option<Path> {
    let key = Ident::new("crate", Span::call_site());
    let s = string(e, &key, "\"my_runtime\"", errors)?;
    match s.parse::<Path>() {
        Ok(p) => Some(p),
        Err(_) => {
            errors.spanned(
                &s,
                "`crate` must be a path, e.g. `crate = \"::my_crate::limit\"`",
            );
            None
        }
    }
}

/// A positive count: an integer literal ≥ 1, or any other expression
/// (a constant, checked at compile time by the runtime's `const fn`).
fn count(e: &Expr, key: &Ident, ty: &str, errors: &mut Errors) -> Option<Expr> {
    let wrong = |errors: &mut Errors, why: &str| {
        errors.spanned(
            e,
            format_args!("`{key}` {why}: write an integer ≥ 1 or a const expression of type `{ty}`, e.g. `{key} = 10`"),
        );
        None
    };
    match lit(e) {
        Some(Lit::Int(i)) => {
            let ok = match ty {
                "u32" => i.base10_parse::<u32>().map(u64::from),
                _ => i.base10_parse::<usize>().map(|v| v as u64),
            };
            match ok {
                Ok(0) => wrong(errors, "must be at least 1"),
                Ok(_) => {
                    // Drop any suffix so the literal takes the parameter's type.
                    let plain = LitInt::new(i.base10_digits(), i.span());
                    Some(syn::parse_quote!(#plain))
                }
                Err(_) => wrong(errors, &format!("is out of range for `{ty}`")),
            }
        }
        Some(Lit::Float(_)) => wrong(errors, "must be a whole number"),
        Some(Lit::Str(_)) => wrong(errors, "takes a number, not a string"),
        Some(_) => wrong(errors, "takes a number"),
        None => match e {
            Expr::Unary(ExprUnary {
                op: UnOp::Neg(_), ..
            }) => wrong(errors, "must be at least 1"),
            _ => Some(e.clone()),
        },
    }
}

fn limited(span: Span, opts: Vec<Opt>, errors: &mut Errors) -> Option<Limited> {
    let mut name = Slot::default();
    let mut max = Slot::default();
    let mut rate_slot = Slot::default();
    let mut burst = Slot::default();
    let mut reserve = Slot::default();
    let mut wait = Slot::default();
    let mut queue = Slot::default();
    let mut adaptive = Slot::default();
    let mut min = Slot::default();
    let mut initial = Slot::default();
    let mut overload = Slot::default();
    let mut refuses = None;
    for opt in &opts {
        let key = &opt.key;
        match key.to_string().as_str() {
            "adaptive" => adaptive.set_with(key, errors, |errors| {
                if let Some(v) = &opt.value {
                    errors.spanned(
                        v,
                        "`adaptive` is a flag: write `adaptive`, not `adaptive = ...`",
                    );
                }
                Some(())
            }),
            "min" => min.set_with(key, errors, |errors| {
                count(value(opt, errors)?, key, "usize", errors)
            }),
            "initial" => initial.set_with(key, errors, |errors| {
                count(value(opt, errors)?, key, "usize", errors)
            }),
            "overload" => overload.set_with(key, errors, |errors| {
                not_literal(
                    value(opt, errors)?,
                    key,
                    "a function or closure `fn(&E) -> bool`",
                    errors,
                )
                .cloned()
            }),
            "name" => name.set_with(key, errors, |errors| {
                name_opt(value(opt, errors)?, key, "limiter", "\"address\"", errors)
            }),
            "max" => max.set_with(key, errors, |errors| {
                count(value(opt, errors)?, key, "usize", errors)
            }),
            "rate" => rate_slot.set_with(key, errors, |errors| {
                let s = string(value(opt, errors)?, key, "\"50/s\"", errors)?;
                match rate::parse(&s.value()) {
                    Ok(r) => Some(r),
                    Err(msg) => {
                        errors.spanned(&s, format_args!("invalid `rate`: {msg}"));
                        None
                    }
                }
            }),
            "burst" => burst.set_with(key, errors, |errors| {
                let e = count(value(opt, errors)?, key, "u32", errors)?;
                match lit(&e) {
                    Some(Lit::Int(i)) => i.base10_parse::<u32>().ok(),
                    _ => {
                        errors.spanned(
                            &e,
                            "`burst` takes an integer literal ≥ 1, e.g. `burst = 10`",
                        );
                        None
                    }
                }
            }),
            "reserve" => reserve.set_with(key, errors, |errors| {
                non_negative(value(opt, errors)?, key, "usize", errors).map(|(e, _)| e)
            }),
            "wait" => {
                refuses.get_or_insert_with(|| key.clone());
                wait.set_with(key, errors, |errors| {
                    duration_opt(value(opt, errors)?, key, errors)
                })
            }
            "queue" => {
                refuses.get_or_insert_with(|| key.clone());
                queue.set_with(key, errors, |errors| {
                    let (e, v) = non_negative(value(opt, errors)?, key, "usize", errors)?;
                    match v {
                        Some(v) => Some(v),
                        None => {
                            errors.spanned(&e, "`queue` takes an integer literal ≥ 0, e.g. `queue = 100` (`queue = 0`: never wait)");
                            None
                        }
                    }
                })
            }
            _ => unknown(Kind::Limited, key, LIMITED_KEYS, errors),
        }
    }
    let has = |k: &str| opts.iter().find(|o| o.key == k).map(|o| &o.key);
    let (has_max, has_rate) = (has("max").is_some(), has("rate").is_some());
    let is_adaptive = has("adaptive").is_some();
    for k in ["min", "initial", "overload"] {
        if let (Some(key), false) = (has(k), is_adaptive) {
            errors.spanned(
                key,
                format_args!("`{k}` needs `adaptive`: write e.g. `#[limited(name = \"s3\", adaptive, {k} = ...)]`, or remove `{k}`"),
            );
        }
    }
    if !has_max && !has_rate && !is_adaptive {
        errors.at(
            span,
            "#[limited] needs `max`, `rate` or `adaptive`: write #[limited(max = 10)], #[limited(name = \"service\", max = 10)] to share the limit, #[limited(name = \"api\", rate = \"50/s\")], or #[limited(name = \"s3\", adaptive)]",
        );
    }
    if let (Some(key), false) = (has("burst"), has_rate) {
        errors.spanned(
            key,
            "`burst` needs `rate`: write e.g. `rate = \"50/s\", burst = 10`",
        );
    }
    if let (Some(key), false) = (has("reserve"), has_max || is_adaptive) {
        errors.spanned(key, "`reserve` needs `max`: it keeps some of the `max` permits for online work, e.g. `max = 20, reserve = 5`");
    }
    let max = max.get();
    let reserve = reserve.get();
    let (min, initial) = (min.get(), initial.get());
    let int = |e: &Option<Expr>| match e.as_ref().and_then(lit) {
        Some(Lit::Int(i)) => i.base10_parse::<usize>().ok(),
        _ => None,
    };
    if is_adaptive {
        let ceiling = if has_max { int(&max) } else { Some(1000) };
        let (lo, start) = (int(&min), int(&initial));
        if let (Some(lo), Some(hi)) = (lo, ceiling) {
            if lo > hi {
                errors.spanned(
                    min.as_ref().unwrap(),
                    format_args!("`min` ({lo}) is above `max` ({hi}): the floor of an adaptive limit must be at most its ceiling"),
                );
            }
        }
        if let Some(start) = start {
            let below = lo.is_some_and(|lo| start < lo);
            let above = ceiling.is_some_and(|hi| start > hi);
            if below || above {
                errors.spanned(
                    initial.as_ref().unwrap(),
                    format_args!(
                        "`initial` ({start}) must be between `min` ({}) and `max` ({})",
                        lo.unwrap_or(1),
                        ceiling.map_or_else(|| "its value".to_owned(), |c| c.to_string())
                    ),
                );
            }
        }
    }
    if let (Some(m), Some(r)) = (&max, &reserve) {
        if let (Some(Lit::Int(m)), Some(Lit::Int(r))) = (lit(m), lit(r)) {
            if let (Ok(m), Ok(rv)) = (m.base10_parse::<usize>(), r.base10_parse::<usize>()) {
                if rv >= m {
                    errors.spanned(
                        r,
                        format_args!(
                            "`reserve` must be less than `max` ({m}): batch work could never start"
                        ),
                    );
                }
            }
        }
    }
    let rate = rate_slot.get();
    let (name, wait, queue, burst) = (name.get(), wait.get(), queue.get(), burst.get());
    if has_max && max.is_none() || has_rate && rate.is_none() {
        return None;
    }
    let adaptive = adaptive.get().map(|()| Adaptive {
        min,
        initial,
        overload: overload.get(),
    });
    Some(Limited {
        name,
        max,
        rate,
        burst,
        reserve,
        wait,
        queue,
        refuses,
        adaptive,
    })
}

/// A count that may be 0: an integer literal ≥ 0 (its value too), or
/// another expression (a constant, checked by the compiler).
fn non_negative(
    e: &Expr,
    key: &Ident,
    ty: &str,
    errors: &mut Errors,
) -> Option<(Expr, Option<usize>)> {
    let wrong = |errors: &mut Errors, why: &str| {
        errors.spanned(
            e,
            format_args!("`{key}` {why}: write an integer ≥ 0 or a const expression of type `{ty}`, e.g. `{key} = 5`"),
        );
        None
    };
    match lit(e) {
        Some(Lit::Int(i)) => match i.base10_parse::<usize>() {
            Ok(v) => {
                let plain = LitInt::new(i.base10_digits(), i.span());
                Some((syn::parse_quote!(#plain), Some(v)))
            }
            Err(_) => wrong(errors, &format!("is out of range for `{ty}`")),
        },
        Some(Lit::Float(_)) => wrong(errors, "must be a whole number"),
        Some(Lit::Str(_)) => wrong(errors, "takes a number, not a string"),
        Some(_) => wrong(errors, "takes a number"),
        None => match e {
            Expr::Unary(ExprUnary {
                op: UnOp::Neg(_), ..
            }) => wrong(errors, "cannot be negative"),
            _ => Some((e.clone(), None)),
        },
    }
}

fn duration_opt(e: &Expr, key: &Ident, errors: &mut Errors) -> Option<Dur> {
    let s = string(e, key, "\"250ms\"", errors)?;
    match duration::parse(&s.value()) {
        Ok(d) => Some(d),
        Err(msg) => {
            errors.spanned(&s, format_args!("invalid duration for `{key}`: {msg}"));
            None
        }
    }
}

fn not_literal<'a>(e: &'a Expr, key: &Ident, what: &str, errors: &mut Errors) -> Option<&'a Expr> {
    if lit(e).is_some() {
        errors.spanned(e, format_args!("`{key}` takes {what}, not a literal"));
        return None;
    }
    Some(e)
}

fn retry(opts: Vec<Opt>, errors: &mut Errors) -> Retry {
    let mut attempts = Slot::default();
    let mut initial = Slot::default();
    let mut multiplier = Slot::default();
    let mut max_delay = Slot::default();
    let mut jitter = Slot::default();
    let mut max_elapsed = Slot::default();
    let mut when = Slot::default();
    let mut delay_hint = Slot::default();
    let mut on_retry = Slot::default();
    let mut policy = Slot::default();
    let mut schedule_keys = Vec::new();
    for opt in &opts {
        let key = &opt.key;
        let callable = |errors: &mut Errors, what: &str| {
            not_literal(value(opt, errors)?, key, what, errors).cloned()
        };
        match key.to_string().as_str() {
            "attempts" => attempts.set_with(key, errors, |errors| {
                count(value(opt, errors)?, key, "u32", errors)
            }),
            "initial" => {
                schedule_keys.push(key);
                initial.set_with(key, errors, |errors| {
                    duration_opt(value(opt, errors)?, key, errors)
                })
            }
            "max_delay" => {
                schedule_keys.push(key);
                max_delay.set_with(key, errors, |errors| {
                    duration_opt(value(opt, errors)?, key, errors)
                })
            }
            "max_elapsed" => max_elapsed.set_with(key, errors, |errors| {
                duration_opt(value(opt, errors)?, key, errors)
            }),
            "multiplier" => {
                schedule_keys.push(key);
                multiplier.set_with(key, errors, |errors| {
                    multiplier_value(value(opt, errors)?, errors)
                })
            }
            "jitter" => {
                schedule_keys.push(key);
                jitter.set_with(key, errors, |errors| {
                    let s = string(value(opt, errors)?, key, "\"full\"", errors)?;
                    let found = Jitter::NAMES.iter().find(|(n, _)| *n == s.value());
                    if found.is_none() {
                        errors.spanned(
                            &s,
                            format_args!(
                                "unknown jitter `{}`: expected one of \"none\", \"full\", \"equal\", \"decorrelated\"",
                                s.value()
                            ),
                        );
                    }
                    found.map(|(_, j)| *j)
                })
            }
            "when" => when.set_with(key, errors, |errors| {
                callable(errors, "a function or closure `fn(&E) -> bool`")
            }),
            "delay_hint" => delay_hint.set_with(key, errors, |errors| {
                callable(errors, "a function or closure `fn(&E) -> Option<Duration>`")
            }),
            "on_retry" => on_retry.set_with(key, errors, |errors| {
                callable(errors, "a function or closure `fn(&E, u32, Duration)`")
            }),
            "policy" => policy.set_with(key, errors, |errors| {
                callable(
                    errors,
                    "an expression yielding a `backoff::backoff::Backoff`",
                )
            }),
            _ => unknown(Kind::Retry, key, RETRY_KEYS, errors),
        }
    }
    let policy = policy.get();
    if policy.is_some() {
        for key in schedule_keys {
            errors.spanned(
                key,
                format_args!("`{key}` has no effect with `policy`, which replaces the built-in schedule: remove one of them"),
            );
        }
    }
    Retry {
        attempts: attempts.get(),
        initial: initial.get(),
        multiplier: multiplier.get(),
        max_delay: max_delay.get(),
        jitter: jitter.get(),
        max_elapsed: max_elapsed.get(),
        when: when.get(),
        delay_hint: delay_hint.get(),
        on_retry: on_retry.get(),
        policy,
    }
}

fn multiplier_value(e: &Expr, errors: &mut Errors) -> Option<f64> {
    let v = match lit(e) {
        Some(Lit::Int(i)) => i.base10_parse::<f64>().ok(),
        Some(Lit::Float(f)) => f.base10_parse::<f64>().ok(),
        _ => None,
    };
    match v {
        Some(v) if v.is_finite() && v >= 1.0 => Some(v),
        Some(_) => {
            errors.spanned(e, "`multiplier` must be at least 1 (1 keeps the delay constant), e.g. `multiplier = 2`");
            None
        }
        None => {
            let neg = matches!(
                e,
                Expr::Unary(ExprUnary {
                    op: UnOp::Neg(_),
                    ..
                })
            );
            let why = if neg {
                "must be at least 1"
            } else {
                "takes a number literal"
            };
            errors.spanned(
                e,
                format_args!("`multiplier` {why}, e.g. `multiplier = 2` or `multiplier = 1.5`"),
            );
            None
        }
    }
}

fn coalesce(opts: Vec<Opt>, errors: &mut Errors) -> Coalesce {
    let mut key_slot = Slot::default();
    for opt in &opts {
        let key = &opt.key;
        match key.to_string().as_str() {
            "key" => key_slot.set_with(key, errors, |errors| value(opt, errors).cloned()),
            _ => unknown(Kind::Coalesce, key, COALESCE_KEYS, errors),
        }
    }
    Coalesce {
        key: key_slot.get(),
    }
}

/// A `name = "..."`: a non-empty string literal.
fn name_opt(
    e: &Expr,
    key: &Ident,
    what: &str,
    example: &str,
    errors: &mut Errors,
) -> Option<LitStr> {
    let s = string(e, key, example, errors)?;
    if s.value().is_empty() {
        errors.spanned(
            &s,
            format_args!(
                "`name` must not be empty; leave it out for a {what} of this function's own"
            ),
        );
        return None;
    }
    Some(s)
}

/// A duration that must be longer than zero.
fn positive_duration(e: &Expr, key: &Ident, errors: &mut Errors) -> Option<Dur> {
    let d = duration_opt(e, key, errors)?;
    if d.0 == 0 {
        errors.spanned(
            e,
            format_args!("`{key}` must be longer than zero, e.g. `{key} = \"2s\"`"),
        );
        return None;
    }
    Some(d)
}

fn timeout(span: Span, opts: Vec<Opt>, errors: &mut Errors) -> Option<Timeout> {
    let mut attempt = Slot::default();
    let mut total = Slot::default();
    for opt in &opts {
        let key = &opt.key;
        match key.to_string().as_str() {
            "attempt" => attempt.set_with(key, errors, |errors| {
                positive_duration(value(opt, errors)?, key, errors)
            }),
            "total" => total.set_with(key, errors, |errors| {
                positive_duration(value(opt, errors)?, key, errors)
            }),
            _ => unknown(Kind::Timeout, key, TIMEOUT_KEYS, errors),
        }
    }
    if opts.is_empty() {
        errors.at(
            span,
            "#[timeout] needs a duration: write #[timeout(\"2s\")] for each attempt, or #[timeout(attempt = \"2s\", total = \"10s\")]",
        );
    }
    let (attempt, total) = (attempt.get(), total.get());
    if attempt.is_none() && total.is_none() {
        return None;
    }
    Some(Timeout { attempt, total })
}

fn breaker(opts: Vec<Opt>, errors: &mut Errors) -> Breaker {
    let mut b = Breaker::default();
    let mut name = Slot::default();
    let mut failure_rate = Slot::default();
    let mut min_calls = Slot::default();
    let mut window = Slot::default();
    let mut open_for = Slot::default();
    let mut half_open = Slot::default();
    let mut failure = Slot::default();
    for opt in &opts {
        let key = &opt.key;
        match key.to_string().as_str() {
            "name" => name.set_with(key, errors, |errors| {
                name_opt(value(opt, errors)?, key, "breaker", "\"billing\"", errors)
            }),
            "failure_rate" => failure_rate.set_with(key, errors, |errors| {
                let e = value(opt, errors)?;
                let v = match lit(e) {
                    Some(Lit::Float(f)) => f.base10_parse::<f64>().ok(),
                    Some(Lit::Int(i)) => i.base10_parse::<f64>().ok(),
                    _ => None,
                };
                match v {
                    Some(v) if v > 0.0 && v <= 1.0 => Some(v),
                    _ => {
                        errors.spanned(e, "`failure_rate` is a share of calls in (0, 1], e.g. `failure_rate = 0.5`");
                        None
                    }
                }
            }),
            "min_calls" => min_calls.set_with(key, errors, |errors| {
                count(value(opt, errors)?, key, "u32", errors)
            }),
            "half_open" => half_open.set_with(key, errors, |errors| {
                count(value(opt, errors)?, key, "u32", errors)
            }),
            "window" => window.set_with(key, errors, |errors| {
                positive_duration(value(opt, errors)?, key, errors)
            }),
            "open_for" => open_for.set_with(key, errors, |errors| {
                positive_duration(value(opt, errors)?, key, errors)
            }),
            "failure" => failure.set_with(key, errors, |errors| {
                not_literal(value(opt, errors)?, key, "a function or closure `fn(&E) -> bool`", errors).cloned()
            }),
            _ => unknown(Kind::CircuitBreaker, key, BREAKER_KEYS, errors),
        }
    }
    b.name = name.get();
    b.failure_rate = failure_rate.get();
    b.min_calls = min_calls.get();
    b.window = window.get();
    b.open_for = open_for.get();
    b.half_open = half_open.get();
    b.failure = failure.get();
    b
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("max", "max"), 0);
        assert_eq!(edit_distance("maxx", "max"), 1);
        assert_eq!(edit_distance("attempt", "attempts"), 1);
        assert_eq!(edit_distance("nme", "name"), 1);
        assert_eq!(edit_distance("keys", "key"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("jiter", "jitter"), 1);
    }
}
