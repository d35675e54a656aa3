//! The mails' words: each a subject, a plain-text part and an HTML part. Everything a
//! person typed (names, titles, reasons) is escaped in the HTML part and kept on one
//! line in the subject; links are Lectern's own.

/// One mail, ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Text made safe for HTML element content and double- or single-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text on one line: control characters (line breaks too) become spaces, and it is cut
/// at `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// The HTML part around `body` (already HTML).
fn page(heading: &str, body: &str, footer: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body style=\"font-family:sans-serif;line-height:1.5;color:#222;max-width:36em\">\n\
         <h1 style=\"font-size:1.3em\">{title}</h1>\n{body}\n\
         <p style=\"color:#666;font-size:0.85em\">{footer}</p>\n</body></html>\n",
        title = escape(heading),
    )
}

fn button(link: &str, label: &str) -> String {
    format!(
        "<p><a href=\"{}\" style=\"display:inline-block;padding:0.5em 1em;background:#2a5db0;color:#fff;text-decoration:none;border-radius:4px\">{}</a></p>\n<p style=\"font-size:0.85em\">Or open this link: <a href=\"{0}\">{0}</a></p>",
        escape(link),
        escape(label)
    )
}

const SIGNATURE: &str = "Lectern";

pub fn verify(name: &str, link: &str, valid_hours: i64) -> Rendered {
    let name = one_line(name, 100);
    Rendered {
        subject: "Confirm your email address".into(),
        text: format!(
            "Hello {name},\n\nplease confirm that this is your email address by opening this link:\n\n{link}\n\n\
             The link works once, for {valid_hours} hours. If you did not sign up for Lectern, ignore this mail.\n\n-- {SIGNATURE}\n"
        ),
        html: page(
            "Confirm your email address",
            &format!(
                "<p>Hello {},</p>\n<p>please confirm that this is your email address.</p>\n{}",
                escape(&name),
                button(link, "Confirm my address")
            ),
            &format!(
                "The link works once, for {valid_hours} hours. If you did not sign up for Lectern, ignore this mail."
            ),
        ),
    }
}

pub fn reset(name: &str, link: &str, valid_minutes: i64) -> Rendered {
    let name = one_line(name, 100);
    Rendered {
        subject: "Reset your password".into(),
        text: format!(
            "Hello {name},\n\nsomeone (we hope you) asked to reset the password of your Lectern account. \
             Choose a new one here:\n\n{link}\n\nThe link works once, for {valid_minutes} minutes. \
             If you did not ask, ignore this mail: your password stays as it is.\n\n-- {SIGNATURE}\n"
        ),
        html: page(
            "Reset your password",
            &format!(
                "<p>Hello {},</p>\n<p>someone (we hope you) asked to reset the password of your Lectern account.</p>\n{}",
                escape(&name),
                button(link, "Choose a new password")
            ),
            &format!(
                "The link works once, for {valid_minutes} minutes. If you did not ask, ignore this mail: your password stays as it is."
            ),
        ),
    }
}

pub fn lecture_ready(name: &str, course: &str, lecture: &str, link: &str) -> Rendered {
    let (name, course, lecture) = (
        one_line(name, 100),
        one_line(course, 200),
        one_line(lecture, 200),
    );
    Rendered {
        subject: one_line(&format!("Ready: {lecture}"), 150),
        text: format!(
            "Hello {name},\n\n\"{lecture}\" in {course} is ready: every rendition is encoded and students can watch it.\n\n{link}\n\n-- {SIGNATURE}\n"
        ),
        html: page(
            "Your lecture is ready",
            &format!(
                "<p>Hello {},</p>\n<p><strong>{}</strong> in <em>{}</em> is ready: every rendition is encoded and students can watch it.</p>\n{}",
                escape(&name),
                escape(&lecture),
                escape(&course),
                button(link, "Open the course in the studio")
            ),
            "You get this mail as the course's owner.",
        ),
    }
}

pub fn lecture_failed(
    name: &str,
    course: &str,
    lecture: &str,
    reason: &str,
    link: &str,
) -> Rendered {
    let (name, course, lecture) = (
        one_line(name, 100),
        one_line(course, 200),
        one_line(lecture, 200),
    );
    let reason = one_line(reason, 500);
    Rendered {
        subject: one_line(&format!("Failed: {lecture}"), 150),
        text: format!(
            "Hello {name},\n\n\"{lecture}\" in {course} could not be processed:\n\n  {reason}\n\n\
             Upload the file again, or another one, from the studio:\n\n{link}\n\n-- {SIGNATURE}\n"
        ),
        html: page(
            "Your lecture could not be processed",
            &format!(
                "<p>Hello {},</p>\n<p><strong>{}</strong> in <em>{}</em> could not be processed:</p>\n\
                 <blockquote>{}</blockquote>\n<p>Upload the file again, or another one, from the studio.</p>\n{}",
                escape(&name),
                escape(&lecture),
                escape(&course),
                escape(&reason),
                button(link, "Open the course in the studio")
            ),
            "You get this mail as the course's owner.",
        ),
    }
}

pub fn new_lectures(
    name: &str,
    course: &str,
    lectures: &[String],
    link: &str,
    unsubscribe: &str,
) -> Rendered {
    let (name, course) = (one_line(name, 100), one_line(course, 200));
    let titles: Vec<String> = lectures.iter().map(|t| one_line(t, 200)).collect();
    let subject = match titles.as_slice() {
        [one] => format!("New in {course}: {one}"),
        many => format!("{} new lectures in {course}", many.len()),
    };
    let list_text: String = titles.iter().map(|t| format!("  - {t}\n")).collect();
    let list_html: String = titles
        .iter()
        .map(|t| format!("<li>{}</li>", escape(t)))
        .collect();
    Rendered {
        subject: one_line(&subject, 150),
        text: format!(
            "Hello {name},\n\nnew in {course}:\n\n{list_text}\nWatch them here:\n\n{link}\n\n-- {SIGNATURE}\n\n\
             You get this mail because you are enrolled in {course}; at most one a day.\n\
             No more of these for this course: {unsubscribe}\n"
        ),
        html: page(
            &format!("New in {course}"),
            &format!(
                "<p>Hello {},</p>\n<p>new in <em>{}</em>:</p>\n<ul>{}</ul>\n{}",
                escape(&name),
                escape(&course),
                list_html,
                button(link, "Watch now")
            ),
            &format!(
                "You get this mail because you are enrolled in {}; at most one a day. \
                 <a href=\"{}\">No more of these for this course</a>.",
                escape(&course),
                escape(unsubscribe)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
    }

    #[test]
    fn user_text_never_reaches_the_html_raw() {
        let evil = "<img src=x onerror=alert(1)>\"'";
        let mails = [
            verify(evil, "https://l.example/#/verify?token=a", 72),
            reset(evil, "https://l.example/#/reset?token=a", 30),
            lecture_ready(evil, evil, evil, "https://l.example/#/studio"),
            lecture_failed(evil, evil, evil, evil, "https://l.example/#/studio"),
            new_lectures(
                evil,
                evil,
                &[evil.to_string(), "Two".into()],
                "https://l.example/#/courses/c",
                "https://l.example/api/mail/unsubscribe?token=t",
            ),
        ];
        for m in &mails {
            assert!(!m.html.contains("<img"), "{}", m.html);
            assert!(m.html.contains("&lt;img src=x onerror=alert(1)&gt;"));
            assert!(!m.subject.contains('\n'));
        }
        // Plain text keeps the words as typed.
        assert!(mails[0].text.contains(evil));
    }

    #[test]
    fn subjects_are_one_short_line() {
        let r = lecture_ready("Ada", "C", "Line one\r\nBcc: x@y.org", "l");
        assert_eq!(r.subject, "Ready: Line one Bcc: x@y.org");
        assert_eq!(one_line(&"x".repeat(300), 10).chars().count(), 10);
    }

    #[test]
    fn digests_list_every_lecture() {
        let one = new_lectures("Ada", "Signals", &["Fourier".into()], "l", "u");
        assert_eq!(one.subject, "New in Signals: Fourier");
        let two = new_lectures(
            "Ada",
            "Signals",
            &["Fourier".into(), "Laplace".into()],
            "l",
            "https://x/u?token=1&b",
        );
        assert_eq!(two.subject, "2 new lectures in Signals");
        assert!(two.text.contains("  - Fourier\n  - Laplace\n"));
        assert!(two.html.contains("<li>Fourier</li><li>Laplace</li>"));
        assert!(two.html.contains("href=\"https://x/u?token=1&amp;b\""));
    }
}
