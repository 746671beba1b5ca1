//! The report as a PDF (A4): tables, horizontal bar charts and the admin's
//! analysis, in English or Chinese. Text is set in a CJK TrueType font
//! (WenQuanYi Micro Hei from Debian's `fonts-wqy-microhei` by default, or the
//! file named by `PVCE_REPORT_FONT`), embedded as a subset holding only the
//! glyphs used (typst's `subsetter`), written with `pdf-writer` as a Type 0
//! font (Identity-H, CIDs = the subset's glyph ids) with a ToUnicode map so
//! the text can be searched and copied.
//!
//! Layout is deliberately simple: one column, top to bottom, a new page when
//! the next block does not fit; every page has a footer with its number.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo};
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str};
use subsetter::GlyphRemapper;

use super::figures::Figures;
use super::{Report, ReportError, ReportState};

/// The language of the PDF's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    /// `zh`, `zh-CN` → Chinese; anything else English.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some(s) if s.to_ascii_lowercase().starts_with("zh") => Lang::Zh,
            _ => Lang::En,
        }
    }
}

/// Where the font comes from; read once, on the first PDF.
#[derive(Debug)]
pub struct FontSource {
    candidates: Vec<std::path::PathBuf>,
    loaded: OnceLock<Result<Vec<u8>, String>>,
}

impl FontSource {
    /// `PVCE_REPORT_FONT`, else the CJK fonts Debian installs.
    pub fn system() -> Self {
        let mut candidates: Vec<std::path::PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os("PVCE_REPORT_FONT") {
            candidates.push(p.into());
        }
        candidates.push("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc".into());
        candidates.push("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc".into());
        Self {
            candidates,
            loaded: OnceLock::new(),
        }
    }

    fn bytes(&self) -> Result<&[u8], ReportError> {
        self.loaded
            .get_or_init(|| {
                for p in &self.candidates {
                    if let Ok(b) = std::fs::read(p) {
                        return Ok(b);
                    }
                }
                tracing::error!(candidates = ?self.candidates, "no CJK font for report PDFs");
                Err("no CJK font is installed (fonts-wqy-microhei)".into())
            })
            .as_deref()
            .map_err(|e| ReportError::PdfUnavailable(e.clone()))
    }
}

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 50.0;
const FONT: Name = Name(b"F1");

/// Label of `key` in `lang`.
fn label(lang: Lang, key: &str) -> &'static str {
    let (en, zh) = match key {
        "title" => ("Service report", "服务报告"),
        "period" => ("Period", "周期"),
        "range" => ("Range", "时间范围"),
        "state" => ("State", "状态"),
        "draft" => ("Draft", "草稿"),
        "reviewed" => ("Reviewed", "已审核"),
        "published" => ("Published", "已发布"),
        "week" => ("Weekly", "周报"),
        "month" => ("Monthly", "月报"),
        "quarter" => ("Quarterly", "季报"),
        "custom" => ("Custom range", "自定义"),
        "summary" => ("1. Summary", "1. 概述"),
        "sla" => ("2. SLA target vs actual", "2. SLA 目标与实际"),
        "incidents" => ("3. Incidents", "3. 故障与请求统计"),
        "workload" => ("4. Engineer workload", "4. 工程师工作量"),
        "satisfaction" => ("5. Satisfaction", "5. 满意度"),
        "resources" => ("6. Resources", "6. 资源使用"),
        "service_levels" => ("7. Service levels", "7. 服务水平"),
        "plan" => ("8. Improvement plan", "8. 服务改进计划"),
        "analysis" => ("Analysis", "分析"),
        "none" => ("(none)", "(无)"),
        "tickets" => ("Tickets", "工单"),
        "incident" => ("Incidents", "故障"),
        "request" => ("Requests", "服务请求"),
        "complaint" => ("Complaints", "投诉"),
        "response_compliance" => ("Response within target", "响应达标率"),
        "resolution_compliance" => ("Resolution within target", "解决达标率"),
        "satisfaction_average" => ("Average rating", "平均满意度"),
        "node_availability" => ("Node availability", "节点可用率"),
        "vm_hours" => ("VM hours", "虚拟机使用小时"),
        "peak_vms" => ("Peak concurrent VMs", "并发虚拟机峰值"),
        "courses" => ("Courses", "课程"),
        "students" => ("Students", "学生"),
        "nodes" => ("Nodes", "节点"),
        "templates" => ("Templates", "模板"),
        "store" => ("Template store", "模板库占用"),
        "priority" => ("Priority", "优先级"),
        "target_response" => ("Response target", "响应目标"),
        "target_resolution" => ("Resolution target", "解决目标"),
        "met" => ("met", "达标"),
        "breached" => ("breached", "超时"),
        "breaches" => ("Breaches", "超时明细"),
        "clock" => ("Clock", "时钟"),
        "over" => ("Over by", "超出"),
        "by_kind" => ("By kind", "按类型"),
        "by_channel" => ("By channel", "按渠道"),
        "by_priority" => ("By priority", "按优先级"),
        "times" => ("Response and resolution", "响应与解决时间"),
        "p50" => ("median", "中位数"),
        "p90" => ("90th percentile", "90 分位"),
        "response" => ("Response", "响应"),
        "resolution" => ("Resolution", "解决"),
        "ftf" => ("First-time fix", "一次解决率"),
        "reopen" => ("Reopened", "重开率"),
        "major" => ("Major incidents (P1)", "重大事件(P1)"),
        "trend" => ("Opened per period", "各时段新建工单"),
        "engineer" => ("Engineer", "工程师"),
        "assigned" => ("Assigned", "分派"),
        "resolved" => ("Resolved", "已解决"),
        "handling" => ("Handling rate", "处理率"),
        "distribution" => ("Ratings", "评分分布"),
        "unrated" => ("Closed unrated", "未评价关闭"),
        "complaints_list" => ("Complaints and replies", "投诉及答复"),
        "node" => ("Node", "节点"),
        "cpu_avg" => ("CPU avg", "CPU 平均"),
        "cpu_peak" => ("CPU peak", "CPU 峰值"),
        "mem_avg" => ("Memory avg", "内存平均"),
        "mem_peak" => ("Memory peak", "内存峰值"),
        "vms_peak" => ("VMs peak", "虚拟机峰值"),
        "mem_full" => ("Memory full in", "内存预计用满"),
        "not_growing" => ("not growing", "未增长"),
        "full" => ("full", "已满"),
        "days" => ("days", "天"),
        "course_hours" => ("VM hours per course", "各课程虚拟机小时"),
        "peak_trend" => ("Peak concurrent VMs per period", "各时段并发峰值"),
        "down_events" => ("Down", "宕机次数"),
        "downtime" => ("Downtime", "宕机时长"),
        "availability" => ("Availability", "可用率"),
        "start_failures" => ("Start failures", "启动失败"),
        "sli_note" => (
            "VM start and console indicators are added here once they are recorded.",
            "虚拟机启动与控制台指标记录后将在此列出。",
        ),
        "class_provisioning" => ("Class provisioning", "上课准备时间"),
        "prestarted" => ("sessions pre-started", "次课堂预启动"),
        "ready_by_start" => ("ready by the start", "次上课前就绪"),
        "min" => ("min", "分钟"),
        "page" => ("Page", "第"),
        _ => ("", ""),
    };
    match lang {
        Lang::En => en,
        Lang::Zh => zh,
    }
}

/// The last day of a range whose end (`to`) is exclusive.
fn last_day(to: &str) -> String {
    time::OffsetDateTime::parse(to, &time::format_description::well_known::Rfc3339)
        .map(|t| (t - time::Duration::seconds(1)).date().to_string())
        .unwrap_or_else(|_| to.chars().take(10).collect())
}

fn forecast(lang: Lang, f: super::figures::Forecast) -> String {
    use super::figures::Forecast as F;
    match f {
        F::Unknown => "—".into(),
        F::NotGrowing => label(lang, "not_growing").into(),
        F::Full => label(lang, "full").into(),
        F::InDays { days } => format!("{days:.0} {}", label(lang, "days")),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{:.1}%", v * 100.0))
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.1}"))
}

fn bytes_text(b: i64) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

/// Lays pages out with the font's metrics, collecting the glyphs used.
struct Writer<'f> {
    face: ttf_parser::Face<'f>,
    units: f32,
    remap: GlyphRemapper,
    /// New glyph id → (a character it shows, advance in 1/1000 em).
    used: BTreeMap<u16, (char, f32)>,
    pages: Vec<Content>,
    y: f32,
}

impl<'f> Writer<'f> {
    fn new(face: ttf_parser::Face<'f>) -> Self {
        let units = f32::from(face.units_per_em());
        let mut w = Self {
            face,
            units,
            remap: GlyphRemapper::new(),
            used: BTreeMap::new(),
            pages: Vec::new(),
            y: 0.0,
        };
        w.new_page();
        w
    }

    fn new_page(&mut self) {
        self.pages.push(Content::new());
        self.y = PAGE_H - MARGIN;
    }

    fn page(&mut self) -> &mut Content {
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// Makes room for `h` points, starting a new page if needed.
    fn need(&mut self, h: f32) {
        if self.y - h < MARGIN + 20.0 {
            self.new_page();
        }
    }

    /// The CIDs (big-endian) and the width in points of `s` at `size`.
    fn shape(&mut self, s: &str, size: f32) -> (Vec<u8>, f32) {
        let mut out = Vec::with_capacity(s.len() * 2);
        let mut width = 0.0;
        for c in s.chars() {
            let c = if c.is_control() { ' ' } else { c };
            let gid = self.face.glyph_index(c).unwrap_or(ttf_parser::GlyphId(0));
            let adv =
                f32::from(self.face.glyph_hor_advance(gid).unwrap_or(0)) * 1000.0 / self.units;
            let new = self.remap.remap(gid.0);
            self.used.entry(new).or_insert((c, adv));
            out.extend_from_slice(&new.to_be_bytes());
            width += adv * size / 1000.0;
        }
        (out, width)
    }

    fn width(&mut self, s: &str, size: f32) -> f32 {
        self.shape(s, size).1
    }

    fn text_at(&mut self, x: f32, y: f32, size: f32, s: &str) {
        let (cids, _) = self.shape(s, size);
        let c = self.page();
        c.begin_text();
        c.set_font(FONT, size);
        c.next_line(x, y);
        c.show(Str(&cids));
        c.end_text();
    }

    /// `s` cut to fit `max` points (with an ellipsis).
    fn fit(&mut self, s: &str, size: f32, max: f32) -> String {
        if self.width(s, size) <= max {
            return s.to_owned();
        }
        let mut out = String::new();
        for c in s.chars() {
            out.push(c);
            if self.width(&out, size) > max - size {
                out.pop();
                out.push('…');
                break;
            }
        }
        out
    }

    fn heading(&mut self, s: &str) {
        self.need(60.0);
        self.y -= 22.0;
        let y = self.y;
        self.text_at(MARGIN, y, 14.0, s);
        let c = self.page();
        c.set_stroke_rgb(0.2, 0.4, 0.7);
        c.set_line_width(0.8);
        c.move_to(MARGIN, y - 4.0);
        c.line_to(PAGE_W - MARGIN, y - 4.0);
        c.stroke();
        self.y -= 10.0;
    }

    fn subheading(&mut self, s: &str) {
        self.need(40.0);
        self.y -= 16.0;
        let y = self.y;
        self.text_at(MARGIN, y, 11.0, s);
        self.y -= 4.0;
    }

    /// Wrapped text: at spaces where there are any, else at any character
    /// (Chinese has no spaces between words).
    fn paragraph(&mut self, s: &str, size: f32) {
        let max = PAGE_W - 2.0 * MARGIN;
        let mut buf = [0u8; 4];
        for line in s.lines() {
            // Widths are summed as characters come (no re-measuring of the
            // whole line: a 20 000-character text stays linear).
            let mut cur = String::new();
            let mut width = 0.0;
            let mut last_space: Option<usize> = None;
            for c in line.chars() {
                let w = self.width(c.encode_utf8(&mut buf), size);
                cur.push(c);
                width += w;
                if c == ' ' {
                    last_space = Some(cur.len());
                }
                if width > max {
                    let rest = match last_space {
                        Some(i) if i < cur.len() => cur.split_off(i),
                        _ => cur.pop().map(String::from).unwrap_or_default(),
                    };
                    self.line(&cur, size);
                    width = self.width(&rest, size);
                    cur = rest;
                    last_space = None;
                }
            }
            self.line(&cur, size);
        }
    }

    fn line(&mut self, s: &str, size: f32) {
        self.need(size * 1.5);
        self.y -= size * 1.5;
        let y = self.y;
        self.text_at(MARGIN, y, size, s.trim_end());
    }

    /// A table: a header row and rows; `widths` in fractions of the text width.
    fn table(&mut self, head: &[&str], rows: &[Vec<String>], widths: &[f32]) {
        let size = 9.0;
        let row_h = 15.0;
        let total = PAGE_W - 2.0 * MARGIN;
        let draw_row = |w: &mut Self, cells: &[String], header: bool| {
            w.need(row_h);
            w.y -= row_h;
            let y0 = w.y;
            if header {
                let c = w.page();
                c.set_fill_rgb(0.9, 0.93, 0.97);
                c.rect(MARGIN, y0, total, row_h);
                c.fill_nonzero();
                c.set_fill_rgb(0.0, 0.0, 0.0);
            }
            let mut x = MARGIN + 3.0;
            for (cell, f) in cells.iter().zip(widths) {
                let text = w.fit(cell, size, f * total - 6.0);
                let y = w.y + 4.5;
                w.text_at(x, y, size, &text);
                x += f * total;
            }
            let c = w.page();
            c.set_stroke_rgb(0.75, 0.75, 0.75);
            c.set_line_width(0.4);
            c.move_to(MARGIN, y0);
            c.line_to(MARGIN + total, y0);
            c.stroke();
        };
        if head.iter().any(|h| !h.is_empty()) {
            let head: Vec<String> = head.iter().map(|s| (*s).to_owned()).collect();
            draw_row(self, &head, true);
        } else {
            // A key-value table: only its top rule.
            self.need(row_h);
            let (y, c) = (self.y, self.page());
            c.set_stroke_rgb(0.75, 0.75, 0.75);
            c.set_line_width(0.4);
            c.move_to(MARGIN, y);
            c.line_to(MARGIN + total, y);
            c.stroke();
        }
        if rows.is_empty() {
            draw_row(self, &[label(Lang::En, "none").to_owned()], false);
        }
        for r in rows {
            draw_row(self, r, false);
        }
        self.y -= 6.0;
    }

    /// A horizontal bar chart of `items` (label, value).
    fn bars(&mut self, title: &str, items: &[(String, f64)], unit: &str) {
        let bar_h = 11.0;
        self.need(24.0 + bar_h * 1.6 * items.len().min(4) as f32);
        self.y -= 14.0;
        let y = self.y;
        self.text_at(MARGIN, y, 9.5, title);
        self.y -= 4.0;
        let max = items.iter().map(|i| i.1).fold(0.0_f64, f64::max);
        let label_w = 130.0;
        let bar_max = PAGE_W - 2.0 * MARGIN - label_w - 60.0;
        for (i, (name, v)) in items.iter().enumerate() {
            self.need(bar_h * 1.6);
            self.y -= bar_h * 1.6;
            let y = self.y;
            let name = self.fit(name, 8.5, label_w - 6.0);
            self.text_at(MARGIN, y + 2.0, 8.5, &name);
            let w = if max > 0.0 {
                (v / max) as f32 * bar_max
            } else {
                0.0
            };
            let (r, g, b) = PALETTE[i % PALETTE.len()];
            let c = self.page();
            c.set_fill_rgb(r, g, b);
            c.rect(MARGIN + label_w, y, w.max(0.5), bar_h);
            c.fill_nonzero();
            c.set_fill_rgb(0.0, 0.0, 0.0);
            let value = if v.fract() == 0.0 {
                format!("{v:.0}{unit}")
            } else {
                format!("{v:.1}{unit}")
            };
            self.text_at(MARGIN + label_w + w + 4.0, y + 2.0, 8.5, &value);
        }
        self.y -= 8.0;
    }

    fn analysis(&mut self, lang: Lang, text: Option<&String>) {
        if let Some(t) = text.filter(|t| !t.trim().is_empty()) {
            self.subheading(label(lang, "analysis"));
            self.paragraph(t, 10.0);
            self.y -= 4.0;
        }
    }
}

const PALETTE: [(f32, f32, f32); 6] = [
    (0.23, 0.47, 0.78),
    (0.91, 0.55, 0.18),
    (0.30, 0.66, 0.38),
    (0.84, 0.29, 0.29),
    (0.55, 0.43, 0.75),
    (0.45, 0.45, 0.45),
];

/// The PDF of `report` in `lang`.
pub fn render(report: &Report, font: &FontSource, lang: Lang) -> Result<Vec<u8>, ReportError> {
    let data = font.bytes()?;
    let face = ttf_parser::Face::parse(data, 0)
        .map_err(|e| ReportError::PdfUnavailable(format!("the font cannot be read: {e}")))?;
    let ascender = f32::from(face.ascender()) * 1000.0 / f32::from(face.units_per_em());
    let descender = f32::from(face.descender()) * 1000.0 / f32::from(face.units_per_em());
    let f = report.sections.as_ref().ok_or(ReportError::NotFound)?;
    let mut w = Writer::new(face);
    lay_out(&mut w, report, f, lang);

    // Footers now that the page count is known.
    let n = w.pages.len();
    for i in 0..n {
        let text = match lang {
            Lang::En => format!(
                "{} · {} {} / {n}",
                label(lang, "title"),
                label(lang, "page"),
                i + 1
            ),
            Lang::Zh => format!("{} · 第 {} / {n} 页", label(lang, "title"), i + 1),
        };
        let (cids, width) = w.shape(&text, 8.0);
        let c = &mut w.pages[i];
        c.set_fill_rgb(0.4, 0.4, 0.4);
        c.begin_text();
        c.set_font(FONT, 8.0);
        c.next_line((PAGE_W - width) / 2.0, MARGIN - 20.0);
        c.show(Str(&cids));
        c.end_text();
    }

    let subset = subsetter::subset(data, 0, &w.remap)
        .map_err(|e| ReportError::PdfUnavailable(format!("the font cannot be subset: {e}")))?;

    let mut next = 1;
    let mut id = || {
        next += 1;
        Ref::new(next - 1)
    };
    let (catalog, pages_id, type0, cid, descriptor, file, tounicode) =
        (id(), id(), id(), id(), id(), id(), id());
    let page_ids: Vec<(Ref, Ref)> = (0..n).map(|_| (id(), id())).collect();
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(pages_id);
    pdf.pages(pages_id)
        .kids(page_ids.iter().map(|p| p.0))
        .count(n as i32);
    for ((page_id, content_id), content) in page_ids.iter().zip(w.pages) {
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(pages_id);
        page.contents(*content_id);
        page.resources().fonts().pair(FONT, type0);
        page.finish();
        let bytes = content.finish();
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(&bytes, 6);
        pdf.stream(*content_id, &packed).filter(Filter::FlateDecode);
    }
    let base = Name(b"PVCEAA+WenQuanYiMicroHei");
    let info = SystemInfo {
        registry: Str(b"Adobe"),
        ordering: Str(b"Identity"),
        supplement: 0,
    };
    pdf.type0_font(type0)
        .base_font(base)
        .encoding_predefined(Name(b"Identity-H"))
        .descendant_font(cid)
        .to_unicode(tounicode);
    {
        let mut c = pdf.cid_font(cid);
        c.subtype(CidFontType::Type2)
            .base_font(base)
            .system_info(info)
            .font_descriptor(descriptor)
            .default_width(0.0)
            .cid_to_gid_map_predefined(Name(b"Identity"));
        let mut widths = c.widths();
        for (&g, &(_, adv)) in &w.used {
            widths.consecutive(g, [adv]);
        }
    }
    pdf.font_descriptor(descriptor)
        .name(base)
        .flags(FontFlags::NON_SYMBOLIC)
        .bbox(Rect::new(0.0, descender, 1000.0, ascender))
        .italic_angle(0.0)
        .ascent(ascender)
        .descent(descender)
        .cap_height(ascender * 0.7)
        .stem_v(80.0)
        .font_file2(file);
    let packed_font = miniz_oxide::deflate::compress_to_vec_zlib(&subset, 6);
    pdf.stream(file, &packed_font).filter(Filter::FlateDecode);
    let mut cmap = pdf_writer::types::UnicodeCmap::new(Name(b"Custom"), info);
    for (&g, &(c, _)) in &w.used {
        cmap.pair(g, c);
    }
    pdf.cmap(tounicode, &cmap.finish());
    Ok(pdf.finish())
}

fn lay_out(w: &mut Writer, report: &Report, f: &Figures, lang: Lang) {
    let l = |k: &str| label(lang, k);
    let texts = &report.texts;
    // Title block.
    w.y -= 10.0;
    let y = w.y;
    let period = match report.period {
        super::Period::Week => "week",
        super::Period::Month => "month",
        super::Period::Quarter => "quarter",
        super::Period::Custom => "custom",
    };
    w.text_at(MARGIN, y, 20.0, &format!("{} · {}", l("title"), l(period)));
    w.y -= 20.0;
    let state = match report.state {
        ReportState::Draft => "draft",
        ReportState::Reviewed => "reviewed",
        ReportState::Published => "published",
    };
    let range = format!(
        "{}: {} — {}    {}: {}",
        l("range"),
        &f.summary.from[..10.min(f.summary.from.len())],
        last_day(&f.summary.to),
        l("state"),
        l(state)
    );
    let y = w.y;
    w.text_at(MARGIN, y, 10.0, &range);
    w.y -= 6.0;

    // 1. Summary.
    w.heading(l("summary"));
    let s = &f.summary;
    let i = &s.inventory;
    let rows = vec![
        vec![
            l("tickets").into(),
            s.tickets.to_string(),
            l("incident").into(),
            s.incidents.to_string(),
        ],
        vec![
            l("complaint").into(),
            s.complaints.to_string(),
            l("satisfaction_average").into(),
            num(s.satisfaction_average),
        ],
        vec![
            l("response_compliance").into(),
            pct(s.response_compliance),
            l("resolution_compliance").into(),
            pct(s.resolution_compliance),
        ],
        vec![
            l("node_availability").into(),
            pct(s.node_availability),
            l("peak_vms").into(),
            s.peak_concurrent_vms.to_string(),
        ],
        vec![
            l("vm_hours").into(),
            format!("{:.1}", s.vm_hours),
            l("courses").into(),
            i.courses.to_string(),
        ],
        vec![
            l("students").into(),
            i.students.to_string(),
            l("nodes").into(),
            i.nodes.to_string(),
        ],
        vec![
            l("templates").into(),
            i.templates.to_string(),
            l("store").into(),
            bytes_text(i.template_store_bytes),
        ],
    ];
    w.table(&["", "", "", ""], &rows, &[0.32, 0.18, 0.32, 0.18]);
    w.analysis(lang, texts.get("summary"));

    // 2. SLA.
    w.heading(l("sla"));
    let rows: Vec<Vec<String>> = f
        .sla
        .per_priority
        .iter()
        .map(|p| {
            vec![
                p.priority.clone(),
                format!("{} {}", p.response_target_minutes, l("min")),
                format!("{} {}", p.resolution_target_minutes, l("min")),
                p.tickets.to_string(),
                format!("{} / {}", p.response_met, p.response_breached),
                format!("{} / {}", p.resolution_met, p.resolution_breached),
            ]
        })
        .collect();
    let met = format!("{} / {}", l("met"), l("breached"));
    let h_resp = format!("{} {met}", l("response"));
    let h_res = format!("{} {met}", l("resolution"));
    w.table(
        &[
            l("priority"),
            l("target_response"),
            l("target_resolution"),
            l("tickets"),
            &h_resp,
            &h_res,
        ],
        &rows,
        &[0.1, 0.17, 0.17, 0.1, 0.23, 0.23],
    );
    let line = format!(
        "{}: {}    {}: {}",
        l("response_compliance"),
        pct(f.sla.response_compliance),
        l("resolution_compliance"),
        pct(f.sla.resolution_compliance)
    );
    w.line(&line, 10.0);
    if !f.sla.breaches.is_empty() {
        w.subheading(l("breaches"));
        let rows: Vec<Vec<String>> = f
            .sla
            .breaches
            .iter()
            .map(|b| {
                vec![
                    format!("#{}", b.number),
                    b.title.clone(),
                    b.priority.clone(),
                    l(&b.clock).to_owned(),
                    format!("{} {}", b.over_minutes, l("min")),
                ]
            })
            .collect();
        w.table(
            &["#", l("tickets"), l("priority"), l("clock"), l("over")],
            &rows,
            &[0.1, 0.45, 0.12, 0.15, 0.18],
        );
    }
    w.analysis(lang, texts.get("sla"));

    // 3. Incidents.
    w.heading(l("incidents"));
    let n = &f.incidents;
    let kinds: Vec<(String, f64)> = n
        .by_kind
        .iter()
        .map(|(k, v)| (l(k).to_owned(), *v as f64))
        .collect();
    w.bars(l("by_kind"), &kinds, "");
    let pri: Vec<(String, f64)> = n
        .by_priority
        .iter()
        .map(|(k, v)| (k.clone(), *v as f64))
        .collect();
    w.bars(l("by_priority"), &pri, "");
    let ch: Vec<(String, f64)> = n
        .by_channel
        .iter()
        .map(|(k, v)| (k.clone(), *v as f64))
        .collect();
    w.bars(l("by_channel"), &ch, "");
    w.subheading(l("times"));
    let rows = vec![
        vec![
            l("response").into(),
            n.response.count.to_string(),
            num(n.response.p50_minutes),
            num(n.response.p90_minutes),
        ],
        vec![
            l("resolution").into(),
            n.resolution.count.to_string(),
            num(n.resolution.p50_minutes),
            num(n.resolution.p90_minutes),
        ],
    ];
    let h50 = format!("{} ({})", l("p50"), l("min"));
    let h90 = format!("{} ({})", l("p90"), l("min"));
    w.table(
        &["", l("tickets"), &h50, &h90],
        &rows,
        &[0.3, 0.2, 0.25, 0.25],
    );
    let line = format!(
        "{}: {}    {}: {}",
        l("ftf"),
        pct(n.first_time_fix_rate),
        l("reopen"),
        pct(n.reopen_rate)
    );
    w.line(&line, 10.0);
    if !n.major.is_empty() {
        w.subheading(l("major"));
        let rows: Vec<Vec<String>> = n
            .major
            .iter()
            .map(|m| {
                vec![
                    format!("#{}", m.number),
                    m.title.clone(),
                    m.created_at
                        .replace('T', " ")
                        .trim_end_matches('Z')
                        .to_owned(),
                    m.resolution.clone().unwrap_or_default(),
                ]
            })
            .collect();
        w.table(
            &["#", l("tickets"), "", l("resolution")],
            &rows,
            &[0.1, 0.35, 0.25, 0.3],
        );
    }
    let series: Vec<(String, f64)> = n
        .series
        .iter()
        .map(|p| (p.period.clone(), p.created as f64))
        .collect();
    if !series.is_empty() {
        w.bars(l("trend"), &series, "");
    }
    w.analysis(lang, texts.get("incidents"));

    // 4. Workload.
    w.heading(l("workload"));
    let rows: Vec<Vec<String>> = f
        .workload
        .iter()
        .map(|x| {
            vec![
                x.name.clone(),
                x.assigned.to_string(),
                x.resolved.to_string(),
                pct(x.handling_rate),
            ]
        })
        .collect();
    w.table(
        &[l("engineer"), l("assigned"), l("resolved"), l("handling")],
        &rows,
        &[0.4, 0.2, 0.2, 0.2],
    );
    w.analysis(lang, texts.get("workload"));

    // 5. Satisfaction.
    w.heading(l("satisfaction"));
    let sat = &f.satisfaction;
    let dist: Vec<(String, f64)> = sat
        .distribution
        .iter()
        .rev()
        .map(|(k, v)| (format!("{k} ★"), *v as f64))
        .collect();
    w.bars(l("distribution"), &dist, "");
    let line = format!(
        "{}: {}    {}: {}",
        l("satisfaction_average"),
        num(sat.average),
        l("unrated"),
        sat.unrated
    );
    w.line(&line, 10.0);
    if !sat.complaints.is_empty() {
        w.subheading(l("complaints_list"));
        let rows: Vec<Vec<String>> = sat
            .complaints
            .iter()
            .map(|c| {
                vec![
                    format!("#{}", c.number),
                    c.title.clone(),
                    c.state.clone(),
                    c.resolution.clone().unwrap_or_default(),
                ]
            })
            .collect();
        w.table(
            &["#", l("complaint"), l("state"), l("resolution")],
            &rows,
            &[0.1, 0.35, 0.15, 0.4],
        );
    }
    w.analysis(lang, texts.get("satisfaction"));

    // 6. Resources.
    w.heading(l("resources"));
    let r = &f.resources;
    let rows: Vec<Vec<String>> = r
        .nodes
        .iter()
        .map(|x| {
            let p = |v: Option<f64>| v.map_or_else(|| "—".into(), |v| format!("{v:.1}%"));
            vec![
                x.node.clone(),
                p(x.cpu_average),
                p(x.cpu_peak),
                p(x.mem_average_percent),
                p(x.mem_peak_percent),
                x.vms_peak.to_string(),
                forecast(lang, x.memory_forecast),
            ]
        })
        .collect();
    w.table(
        &[
            l("node"),
            l("cpu_avg"),
            l("cpu_peak"),
            l("mem_avg"),
            l("mem_peak"),
            l("vms_peak"),
        ],
        &rows,
        &[0.25, 0.15, 0.15, 0.15, 0.15, 0.15],
    );
    let line = format!(
        "{}: {}    {}: {:.1}    {}: {}",
        l("peak_vms"),
        r.peak_concurrent_vms,
        l("vm_hours"),
        r.vm_hours,
        l("store"),
        bytes_text(r.template_store_bytes)
    );
    w.line(&line, 10.0);
    let hours: Vec<(String, f64)> = r
        .hours_per_course
        .iter()
        .map(|c| (c.course.clone(), c.hours))
        .collect();
    if !hours.is_empty() {
        w.bars(l("course_hours"), &hours, " h");
    }
    let peaks: Vec<(String, f64)> = r
        .peak_trend
        .iter()
        .map(|p| (p.period.clone(), p.peak_vms as f64))
        .collect();
    if !peaks.is_empty() {
        w.bars(l("peak_trend"), &peaks, "");
    }
    w.analysis(lang, texts.get("resources"));

    // 7. Service levels.
    w.heading(l("service_levels"));
    let sl = &f.service_levels;
    let rows: Vec<Vec<String>> = sl
        .nodes
        .iter()
        .map(|x| {
            vec![
                x.node.clone(),
                x.down_events.to_string(),
                format!("{:.1} {}", x.downtime_minutes, l("min")),
                pct(Some(x.availability)),
                x.start_failures.to_string(),
            ]
        })
        .collect();
    w.table(
        &[
            l("node"),
            l("down_events"),
            l("downtime"),
            l("availability"),
            l("start_failures"),
        ],
        &rows,
        &[0.3, 0.15, 0.2, 0.17, 0.18],
    );
    let cp = &sl.class_provisioning;
    let secs = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |s| format!("{s:.0} s"));
    w.line(
        &format!(
            "{}: {} {} · {} {} · p50 {} · p95 {} · max {}",
            l("class_provisioning"),
            cp.sessions,
            l("prestarted"),
            cp.ready_by_start,
            l("ready_by_start"),
            secs(cp.p50_seconds),
            secs(cp.p95_seconds),
            secs(cp.max_seconds),
        ),
        10.0,
    );
    w.line(l("sli_note"), 9.0);
    w.analysis(lang, texts.get("service_levels"));

    // 8. Improvement plan.
    w.heading(l("plan"));
    match texts.get("plan").filter(|t| !t.trim().is_empty()) {
        Some(t) => w.paragraph(t, 10.0),
        None => w.line(l("none"), 10.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::figures::{compute, tests as fx};
    use crate::reports::{Period, Report};
    use time::macros::datetime;

    fn report() -> Report {
        let f = compute(
            &fx::week(),
            &fx::policy(),
            &crate::desk::calendar::Calendar::default(),
            datetime!(2026-03-10 00:00 UTC),
        );
        let mut texts = std::collections::BTreeMap::new();
        texts.insert(
            "summary".into(),
            "本周服务总体平稳。Two incidents breached their targets.".into(),
        );
        texts.insert(
            "plan".into(),
            "1. 增加一个节点。\n2. Review the P3 queue daily.".into(),
        );
        Report {
            id: uuid::Uuid::nil(),
            period: Period::Week,
            from: f.summary.from.clone(),
            to: f.summary.to.clone(),
            state: ReportState::Draft,
            sections: Some(f),
            texts,
            created_by: uuid::Uuid::nil(),
            created_at: "2026-03-10T00:00:00Z".into(),
            generated_at: "2026-03-10T00:00:00Z".into(),
            reviewed_at: None,
            published_at: None,
        }
    }

    #[test]
    fn renders_both_languages_with_a_subset_font() {
        let font = FontSource::system();
        for lang in [Lang::En, Lang::Zh] {
            let pdf = render(&report(), &font, lang)
                .expect("the CJK font (fonts-wqy-microhei) is installed");
            assert!(pdf.starts_with(b"%PDF-"));
            assert!(pdf.windows(9).any(|w| w == b"FontFile2"));
            assert!(pdf.windows(9).any(|w| w == b"ToUnicode"));
            // The full font is 5 MB; the subset with a few hundred glyphs is small.
            assert!(pdf.len() < 400_000, "{} bytes", pdf.len());
            if let Some(dir) = std::env::var_os("PVCE_KEEP_PDF") {
                let path = std::path::Path::new(&dir).join(format!("report-{lang:?}.pdf"));
                std::fs::write(path, &pdf).expect("write");
            }
        }
    }

    #[test]
    fn long_texts_wrap_onto_pages() {
        let mut r = report();
        // The longest texts the API takes, in every section.
        for k in crate::reports::TEXT_KEYS {
            r.texts.insert(
                k.into(),
                "服务改进 plan ".repeat(crate::reports::MAX_TEXT_CHARS / 11),
            );
        }
        let started = std::time::Instant::now();
        let pdf = render(&r, &FontSource::system(), Lang::Zh).expect("font");
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn language_from_the_query() {
        assert_eq!(Lang::parse(Some("zh-CN")), Lang::Zh);
        assert_eq!(Lang::parse(Some("en")), Lang::En);
        assert_eq!(Lang::parse(None), Lang::En);
    }
}
