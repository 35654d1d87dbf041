// Sends Customers Mail Cloud (CMC) shaped webhooks with a real Apache
// HttpClient 4.5 / HttpMime 4.5 client, so that server.py can record the raw
// bytes, and writes manifest.json describing what was sent.
//
// Usage: java -cp <jars>:<classes> Capture <port> <manifest-path>
//
// Every request goes to http://webhook.example.jp/mails. The client resolves
// every host name to 127.0.0.1 and connects to <port>, so the bytes written
// (the Host header in particular) do not depend on the port that the capture
// server happened to get. Everything else (headers, their order, the body
// framing) is HttpClient's own behaviour. Run it through capture.sh.

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.http.HttpEntity;
import org.apache.http.HttpHost;
import org.apache.http.NameValuePair;
import org.apache.http.client.config.RequestConfig;
import org.apache.http.client.entity.UrlEncodedFormEntity;
import org.apache.http.client.methods.CloseableHttpResponse;
import org.apache.http.client.methods.HttpPost;
import org.apache.http.config.Registry;
import org.apache.http.config.RegistryBuilder;
import org.apache.http.conn.DnsResolver;
import org.apache.http.conn.socket.ConnectionSocketFactory;
import org.apache.http.conn.socket.PlainConnectionSocketFactory;
import org.apache.http.entity.ByteArrayEntity;
import org.apache.http.entity.ContentType;
import org.apache.http.entity.HttpEntityWrapper;
import org.apache.http.entity.InputStreamEntity;
import org.apache.http.entity.StringEntity;
import org.apache.http.entity.mime.FormBodyPart;
import org.apache.http.entity.mime.FormBodyPartBuilder;
import org.apache.http.entity.mime.HttpMultipartMode;
import org.apache.http.entity.mime.MultipartEntityBuilder;
import org.apache.http.entity.mime.content.ByteArrayBody;
import org.apache.http.entity.mime.content.ContentBody;
import org.apache.http.entity.mime.content.StringBody;
import org.apache.http.impl.client.CloseableHttpClient;
import org.apache.http.impl.client.DefaultHttpRequestRetryHandler;
import org.apache.http.impl.client.HttpClients;
import org.apache.http.impl.conn.PoolingHttpClientConnectionManager;
import org.apache.http.message.BasicNameValuePair;
import org.apache.http.protocol.HttpContext;
import org.apache.http.util.EntityUtils;

public final class Capture {

    static final String URL = "http://webhook.example.jp/mails";
    static final String USER_AGENT = "Apache-HttpClient/4.5.14 (Java/17)";
    /** The one boundary used by every multipart case (HttpMime's own is random). */
    static final String BOUNDARY = "HttpMimeFixedBoundary_cmc-capture_7MA4YWxkTrZu0gW";

    static final Charset UTF8 = StandardCharsets.UTF_8;
    static final Charset LATIN1 = StandardCharsets.ISO_8859_1;
    static final Charset ASCII = StandardCharsets.US_ASCII;
    static final Charset SJIS = Charset.forName("Shift_JIS");
    static final Charset EUCJP = Charset.forName("EUC-JP");
    static final Charset JIS = Charset.forName("ISO-2022-JP");

    // ------------------------------------------------------------------
    // Payload text
    // ------------------------------------------------------------------

    /** Subject with Japanese and an é (UTF-8 only). */
    static final String SUBJECT_UTF8 = "【Café通信】メールマガジン 2024年5月号のご案内";
    /** Subject with Japanese only, including 表/ソ/能 whose Shift_JIS second byte is 0x5C ('\'). */
    static final String SUBJECT_JP = "【重要】表計算ソフトの能力表と見積書のご案内";
    /** Latin-1 only subject. */
    static final String SUBJECT_LATIN1 = "Café crème: résumé de la semaine";
    /**
     * The seven characters whose Java (JIS) and WHATWG (Windows code page)
     * mappings differ in Shift_JIS / EUC-JP / ISO-2022-JP:
     * 〜 U+301C, − U+2212, ‖ U+2016, — U+2014, ¢ U+00A2, £ U+00A3, ¬ U+00AC.
     */
    static final String SUBJECT_TABLE = "波ダッシュ〜全角マイナス−双柱‖ダッシュ—セント¢ポンド£否定¬の確認";

    /** Java → WHATWG form of the seven characters above (for expected_whatwg). */
    static final String[][] WHATWG_FORMS = {
        {"\u301C", "\uFF5E"}, {"\u2212", "\uFF0D"}, {"\u2016", "\u2225"}, {"\u2014", "\u2015"},
        {"\u00A2", "\uFFE0"}, {"\u00A3", "\uFFE1"}, {"\u00AC", "\uFFE2"},
    };

    static String deliveriesJson(String subject) {
        return "{\"deliveries\":["
            + "{\"reason\":\"\",\"sourceIp\":\"100.100.100.1\",\"returnPath\":\"info@return.sandbox.smtps.jp\","
            + "\"created\":\"2024-05-08 13:23:58\",\"subject\":\"" + subject + "\",\"apiData\":\"campaign-42\","
            + "\"messageId\":\"\\u003C1e928240-492e-af27-fcac-da2513ec7bc8@example.com\\u003E\","
            + "\"from\":\"info@example.com\",\"to\":\"user@example.jp\",\"senderIp\":\"\",\"status\":\"queued\"},"
            + "{\"reason\":\"250 2.0.0 Ok: queued as 4Vb1Xy2ZzQz\",\"sourceIp\":\"\",\"returnPath\":\"info@return.sandbox.smtps.jp\","
            + "\"created\":\"2024-05-08 13:24:01\",\"subject\":\"" + subject + "\",\"apiData\":\"\","
            + "\"messageId\":\"\\u003C1e928240-492e-af27-fcac-da2513ec7bc8@example.com\\u003E\","
            + "\"from\":\"info@example.com\",\"to\":\"user@example.jp\",\"senderIp\":\"203.0.113.25\",\"status\":\"succeeded\"}"
            + "]}";
    }

    static String bouncesJson(String subject) {
        return "{\"bounces\":["
            + "{\"reason\":\"550 5.1.1 \\u003Cnobody@example.jp\\u003E: Recipient address rejected: User unknown in local recipient table\","
            + "\"returnPath\":\"info@return.sandbox.smtps.jp\",\"created\":\"2024-05-08 13:30:12\","
            + "\"subject\":\"" + subject + "\",\"apiData\":\"\","
            + "\"messageId\":\"\\u003C5f0c1d2e-1111-2222-3333-444455556666@example.com\\u003E\","
            + "\"from\":\"info@example.com\",\"to\":\"nobody@example.jp\",\"status\":\"2\"},"
            + "{\"reason\":\"Host or domain name not found. Name service error for name=example.invalid type=MX: Host not found\","
            + "\"returnPath\":\"info@return.sandbox.smtps.jp\",\"created\":\"2024-05-08 13:30:15\","
            + "\"subject\":\"" + subject + "\",\"apiData\":\"\","
            + "\"messageId\":\"\\u003C5f0c1d2e-7777-8888-9999-000011112222@example.com\\u003E\","
            + "\"from\":\"info@example.com\",\"to\":\"user@example.invalid\",\"status\":\"1\"}"
            + "]}";
    }

    /** The JSON text of the inbound `headers` field. */
    static String headersJson(String fromName, String subjectRaw) {
        return "[{\"name\":\"Return-Path\",\"value\":\"\\u003Csender@example.com\\u003E\"},"
            + "{\"name\":\"Received\",\"value\":\"from mx.example.com (mx.example.com [198.51.100.7]) by in.smtps.jp\"},"
            + "{\"name\":\"Received\",\"value\":\"from [192.0.2.10] by mx.example.com\"},"
            + "{\"name\":\"From\",\"value\":\"" + fromName + " \\u003Csender@example.com\\u003E\"},"
            + "{\"name\":\"To\",\"value\":\"info@in.example.jp\"},"
            + "{\"name\":\"Subject\",\"value\":\"" + subjectRaw + "\"},"
            + "{\"name\":\"Date\",\"value\":\"Wed, 08 May 2024 15:56:26 +0900\"},"
            + "{\"name\":\"Message-ID\",\"value\":\"\\u003CCAF=abc123@mail.example.com\\u003E\"},"
            + "{\"name\":\"MIME-Version\",\"value\":\"1.0\"}]";
    }

    /** RFC 2047 encoded word(s) for a subject, in the given charset (Base64). */
    static String encodedWord(String text, Charset cs) {
        return "=?" + cs.name() + "?B?" + Base64.getEncoder().encodeToString(text.getBytes(cs)) + "?=";
    }

    /** A mail's worth of inbound text in one "language set". */
    record Mail(String subject, String fromName, String text, String html, List<FileSpec> files) {}

    record FileSpec(String field, String filename, ContentType contentType, byte[] data) {}

    static byte[] pdfBytes(int extra) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.writeBytes("%PDF-1.4\n%\u00e2\u00e3\u00cf\u00d3\n".getBytes(LATIN1));
        for (int i = 0; i < 256; i++) out.write(i);
        // bytes that look like, but are not, a delimiter line
        out.writeBytes("\r\n--HttpMimeFixedBoundary_not-the-boundary\r\n--\r\n".getBytes(ASCII));
        for (int i = 0; i < extra; i++) out.write((i * 31 + 7) & 0xff);
        out.writeBytes("\n%%EOF\n".getBytes(ASCII));
        return out.toByteArray();
    }

    static Mail mailJapanese() {
        return new Mail(
            "見積書送付の件（2024年度）",
            "山田 太郎",
            "山田様\r\n\r\nいつもお世話になっております。\r\n表計算ソフトの能力表と見積書を添付いたします。\r\nご確認ください。\r\n",
            "<html><body><p>山田様</p><p>表計算ソフトの能力表と見積書を添付いたします。</p></body></html>",
            List.of(
                new FileSpec("attachment1", "見積書 2024;最終\"版\".pdf", ContentType.create("application/pdf"), pdfBytes(64)),
                new FileSpec("attachment2", "表計算ソフト 能力表.csv", ContentType.create("text/csv", UTF8),
                    "品名,能力,単価\r\n表計算ソフト,高,10000\r\n".getBytes(UTF8)),
                new FileSpec("attachment3", "※議事録 音声資料;移行.txt", ContentType.create("text/plain", UTF8),
                    "議事録\r\n音声資料の移行について\r\n".getBytes(UTF8)),
                // no extension: in Shift_JIS the name ends in 0x5C, right before the closing quote
                new FileSpec("attachment4", "部品一覧表", ContentType.create("application/vnd.ms-excel"),
                    new byte[] {(byte) 0xD0, (byte) 0xCF, 0x11, (byte) 0xE0, (byte) 0xA1, (byte) 0xB1, 0x1A, (byte) 0xE1})));
    }

    static Mail mailUtf8() {
        Mail jp = mailJapanese();
        return new Mail(
            "見積書送付の件（Café 様）",
            "山田 太郎",
            "Café 様\r\n\r\nいつもお世話になっております。\r\n見積書を添付いたします。\r\n",
            "<html><body><p>Café 様</p><p>見積書を添付いたします。</p></body></html>",
            jp.files());
    }

    static Mail mailLatin1() {
        return new Mail(
            "Café crème: votre résumé",
            "Zoë Dupré",
            "Bonjour,\r\n\r\nVoici le résumé du café.\r\n",
            "<html><body><p>Voici le r\u00e9sum\u00e9 du caf\u00e9.</p></body></html>",
            List.of(
                new FileSpec("attachment1", "Résumé café;\"final\".pdf", ContentType.create("application/pdf"), pdfBytes(16)),
                new FileSpec("attachment2", "naïve notes.txt", ContentType.create("text/plain", LATIN1),
                    "na\u00efve\r\n".getBytes(LATIN1))));
    }

    static Mail mailTable() {
        return new Mail(
            SUBJECT_TABLE,
            "山田 太郎",
            "文字表の確認：〜 − ‖ — ¢ £ ¬\r\n",
            "<p>〜 − ‖ — ¢ £ ¬</p>",
            List.of(new FileSpec("attachment1", "料金表〜改定版−最終‖£¢¬—.pdf", ContentType.create("application/pdf"), pdfBytes(8))));
    }

    static Mail mailPaths() {
        Mail jp = mailJapanese();
        return new Mail(jp.subject(), jp.fromName(), jp.text(), jp.html(), List.of(
            new FileSpec("attachment1", "..\\..\\windows\\system.ini", ContentType.create("text/plain", UTF8), "[boot]\r\n".getBytes(UTF8)),
            new FileSpec("attachment2", "dir/sub/報告書.docx",
                ContentType.create("application/vnd.openxmlformats-officedocument.wordprocessingml.document"), pdfBytes(0)),
            new FileSpec("attachment3", "C:\\Users\\山田\\Desktop\\請求書.pdf", ContentType.create("application/pdf"), pdfBytes(4))));
    }

    static Mail mailMany() {
        Mail jp = mailJapanese();
        List<FileSpec> files = new ArrayList<>(jp.files());
        files.add(new FileSpec("attachment5", "空のファイル.txt", ContentType.create("text/plain", UTF8), new byte[0]));
        files.add(new FileSpec("attachment6", "", ContentType.DEFAULT_BINARY, new byte[] {0, 1, 2, 3}));
        files.add(new FileSpec("attachment7", "写真 (1).jpg", ContentType.create("image/jpeg"),
            new byte[] {(byte) 0xFF, (byte) 0xD8, (byte) 0xFF, (byte) 0xE0, 0, 0x10, 'J', 'F', 'I', 'F', 0, (byte) 0xFF, (byte) 0xD9}));
        return new Mail(jp.subject(), jp.fromName(), jp.text(), jp.html(), files);
    }

    static Mail mailBig() {
        Mail jp = mailJapanese();
        return new Mail(jp.subject(), jp.fromName(), jp.text(), jp.html(), List.of(
            new FileSpec("attachment1", "見積書 2024;最終\"版\".pdf", ContentType.create("application/pdf"), pdfBytes(6000))));
    }

    // ------------------------------------------------------------------
    // Cases
    // ------------------------------------------------------------------

    enum Transfer { CONTENT_LENGTH, CHUNKED, CHUNKED_STREAM }

    /** How a text field is handed to HttpMime. */
    enum TextStyle {
        /** addTextBody(name, value, ContentType.create("text/plain", cs)) */
        LABELLED,
        /** addTextBody(name, value): HttpMime's ContentType.DEFAULT_TEXT, text/plain; charset=ISO-8859-1 */
        PLAIN,
        /** addBinaryBody(name, value.getBytes(cs), ContentType.create("text/plain"), null): no charset label */
        BYTES_UNLABELLED
    }

    static final class Case {
        String name, description, mode;
        Charset charset; // form charset / builder setCharset / json charset; null when not set
        Transfer transfer = Transfer.CONTENT_LENGTH;
        boolean expect;
        HttpEntity entity;
        final List<String[]> fields = new ArrayList<>();
        final List<FileSpec> files = new ArrayList<>();
        // expected (what a correct decoder reads back from the bytes, Java's charset tables)
        final List<String[]> expFields = new ArrayList<>();
        final List<Object[]> expFiles = new ArrayList<>(); // field, filename, content_type header
        Charset decodeCharset; // for WHATWG substitution in form/json; multipart tracks per value
        final List<Charset> expFieldCs = new ArrayList<>();
        final List<Charset> expFileCs = new ArrayList<>();
        final List<Map<String, Object>> parts = new ArrayList<>();
        final List<String> notes = new ArrayList<>();
        final List<String> varies = new ArrayList<>();
        String contentType;
    }

    static final List<Case> CASES = new ArrayList<>();

    static String roundTrip(String s, Charset cs) {
        return new String(s.getBytes(cs), cs);
    }

    static Case newCase(String name, String mode, String description) {
        Case c = new Case();
        c.name = name;
        c.mode = mode;
        c.description = description;
        CASES.add(c);
        return c;
    }

    // ---- form ----

    static Case form(String name, String description, Charset cs, boolean explicitCharset, String eventType,
                     String eventJson, boolean apiKey, Transfer transfer, boolean expect) {
        Case c = newCase(name, "form", description);
        c.fields.add(new String[] {"server_composition", "sandbox"});
        c.fields.add(new String[] {"event_type", eventType});
        c.fields.add(new String[] {"event", eventJson});
        if (apiKey) c.fields.add(new String[] {"api_key", "k3y-ABC_123.xyz"});
        List<NameValuePair> params = new ArrayList<>();
        for (String[] f : c.fields) params.add(new BasicNameValuePair(f[0], f[1]));
        UrlEncodedFormEntity entity;
        if (explicitCharset) {
            entity = new UrlEncodedFormEntity(params, cs);
            c.charset = cs;
        } else {
            try {
                entity = new UrlEncodedFormEntity(params); // HttpClient default: ISO-8859-1, no label
            } catch (java.io.UnsupportedEncodingException ex) {
                throw new IllegalStateException(ex);
            }
            c.charset = null;
            cs = LATIN1;
            c.notes.add("new UrlEncodedFormEntity(params) without a charset: HttpClient percent-encodes in ISO-8859-1 "
                + "and the Content-Type carries no charset parameter.");
        }
        c.decodeCharset = cs;
        for (String[] f : c.fields) {
            c.expFields.add(new String[] {f[0], roundTrip(f[1], cs)});
            c.expFieldCs.add(cs);
        }
        c.transfer = transfer;
        if (transfer == Transfer.CHUNKED) entity.setChunked(true);
        c.entity = entity;
        c.expect = expect;
        return c;
    }

    // ---- json ----

    static Case json(String name, String description, String eventType, String eventJson, boolean labelled,
                     Transfer transfer, boolean expect) {
        Case c = newCase(name, "json", description);
        String body = "{\"server_composition\":\"sandbox\",\"event_type\":\"" + eventType + "\",\"event\":" + eventJson
            + ",\"api_key\":\"k3y-ABC_123.xyz\"}";
        c.fields.add(new String[] {"body", body});
        c.expFields.add(new String[] {"body", body});
        c.expFieldCs.add(UTF8);
        c.decodeCharset = UTF8;
        if (labelled) {
            StringEntity e = new StringEntity(body, ContentType.APPLICATION_JSON);
            c.charset = UTF8;
            if (transfer == Transfer.CHUNKED) e.setChunked(true);
            c.entity = e;
        } else {
            ByteArrayEntity e = new ByteArrayEntity(body.getBytes(UTF8), ContentType.create("application/json"));
            c.charset = null;
            if (transfer == Transfer.CHUNKED) e.setChunked(true);
            c.entity = e;
            c.notes.add("ByteArrayEntity of UTF-8 bytes with ContentType.create(\"application/json\"): no charset parameter.");
        }
        c.notes.add("sent.fields holds one pseudo-field `body`: the whole JSON document as sent.");
        c.transfer = transfer;
        c.expect = expect;
        return c;
    }

    // ---- multipart ----

    static Charset headerCharset(HttpMultipartMode mode, Charset builderCs) {
        switch (mode) {
            case STRICT: return ASCII;                       // HttpStrictMultipart: US-ASCII always
            case RFC6532: return UTF8;                       // HttpRFC6532Multipart: UTF-8 always
            default: return builderCs != null ? builderCs : ASCII; // BROWSER_COMPATIBLE: the builder charset
        }
    }

    static String modeName(HttpMultipartMode mode) {
        switch (mode) {
            case STRICT: return "multipart-strict";
            case RFC6532: return "multipart-rfc6532";
            default: return "multipart-browser-compatible";
        }
    }

    static void addPartInfo(Case c, HttpMultipartMode mode, String field, ContentBody body, Charset bodyCs) {
        // Build the same part HttpMime builds, to read its header fields.
        FormBodyPart part = FormBodyPartBuilder.create(field, body).build();
        Map<String, Object> info = new LinkedHashMap<>();
        info.put("field", field);
        info.put("filename", body.getFilename());
        String ct = part.getHeader().getField("Content-Type") == null ? null
            : part.getHeader().getField("Content-Type").getBody();
        boolean written = mode != HttpMultipartMode.BROWSER_COMPATIBLE || body.getFilename() != null;
        String ctWritten = written ? ct : null;
        info.put("content_type_header", ctWritten);
        info.put("charset_label", ctWritten == null ? null : ContentType.parse(ctWritten).getCharset() == null ? null
            : ContentType.parse(ctWritten).getCharset().name());
        info.put("content_transfer_encoding_header", mode == HttpMultipartMode.BROWSER_COMPATIBLE
            || part.getHeader().getField("Content-Transfer-Encoding") == null ? null
            : part.getHeader().getField("Content-Transfer-Encoding").getBody());
        info.put("body_charset", bodyCs == null ? null : bodyCs.name());
        c.parts.add(info);
    }

    static Case multipart(String name, String description, HttpMultipartMode mode, Charset builderCs,
                          TextStyle style, Charset textCs, Mail mail, Transfer transfer, boolean expect) {
        Case c = newCase(name, modeName(mode), description);
        MultipartEntityBuilder b = MultipartEntityBuilder.create().setMode(mode).setBoundary(BOUNDARY);
        if (builderCs != null) b.setCharset(builderCs);
        c.charset = builderCs;
        Charset hcs = headerCharset(mode, builderCs);

        List<String[]> texts = new ArrayList<>();
        texts.add(new String[] {"server_composition", "sandbox"});
        texts.add(new String[] {"filter", "info@in.example.jp"});
        Charset subjectCs = (textCs == null || textCs.equals(LATIN1)) ? UTF8 : textCs;
        texts.add(new String[] {"headers", headersJson(mail.fromName(), encodedWord(mail.subject(), subjectCs))});
        texts.add(new String[] {"subject", mail.subject()});
        texts.add(new String[] {"envelope-from", "sender@example.com"});
        texts.add(new String[] {"envelope-to", "info@in.example.jp"});
        texts.add(new String[] {"text", mail.text()});
        texts.add(new String[] {"html", mail.html()});
        texts.add(new String[] {"attachments", Integer.toString(mail.files().size())});
        addTexts(c, b, mode, style, textCs, texts);
        for (FileSpec f : mail.files()) {
            b.addBinaryBody(f.field(), f.data(), f.contentType(), f.filename());
            c.files.add(f);
            addPartInfo(c, mode, f.field(), new ByteArrayBody(f.data(), f.contentType(), f.filename()), null);
            String ctHeader = (String) c.parts.get(c.parts.size() - 1).get("content_type_header");
            c.expFiles.add(new Object[] {f.field(), roundTrip(f.filename(), hcs), ctHeader, f.data()});
            c.expFileCs.add(hcs);
        }
        finishMultipart(c, b, mode, hcs, transfer, expect);
        return c;
    }

    static void addTexts(Case c, MultipartEntityBuilder b, HttpMultipartMode mode, TextStyle style, Charset textCs,
                         List<String[]> texts) {
        for (String[] t : texts) {
            c.fields.add(t);
            Charset bodyCs;
            ContentBody body;
            switch (style) {
                case PLAIN:
                    b.addTextBody(t[0], t[1]);
                    bodyCs = LATIN1;
                    body = new StringBody(t[1], ContentType.DEFAULT_TEXT);
                    break;
                case BYTES_UNLABELLED:
                    b.addBinaryBody(t[0], t[1].getBytes(textCs), ContentType.create("text/plain"), null);
                    bodyCs = textCs;
                    body = new ByteArrayBody(t[1].getBytes(textCs), ContentType.create("text/plain"), null);
                    break;
                default:
                    ContentType ct = ContentType.create("text/plain", textCs);
                    b.addTextBody(t[0], t[1], ct);
                    bodyCs = textCs;
                    body = new StringBody(t[1], ct);
            }
            addPartInfo(c, mode, t[0], body, bodyCs);
            c.expFields.add(new String[] {t[0], roundTrip(t[1], bodyCs)});
            c.expFieldCs.add(bodyCs);
        }
    }

    static void finishMultipart(Case c, MultipartEntityBuilder b, HttpMultipartMode mode, Charset hcs,
                                Transfer transfer, boolean expect) {
        HttpEntity e = b.build();
        c.transfer = transfer;
        if (transfer == Transfer.CHUNKED) {
            e = new HttpEntityWrapper(e) {
                @Override public boolean isChunked() { return true; }
                @Override public long getContentLength() { return -1; }
            };
        } else if (transfer == Transfer.CHUNKED_STREAM) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            try {
                e.writeTo(out);
            } catch (IOException ex) {
                throw new RuntimeException(ex);
            }
            InputStreamEntity ise = new InputStreamEntity(new ByteArrayInputStream(out.toByteArray()), -1,
                ContentType.parse(e.getContentType().getValue()));
            e = ise;
        }
        c.entity = e;
        c.expect = expect;
        c.notes.add("part headers written in " + hcs.name() + " (" + (mode == HttpMultipartMode.STRICT
            ? "STRICT: US-ASCII always, unmappable characters become '?'"
            : mode == HttpMultipartMode.RFC6532 ? "RFC6532: UTF-8 always, whatever setCharset says"
            : "BROWSER_COMPATIBLE: the builder charset, US-ASCII when none is set") + ")");
    }

    static Case multipartEvent(String name, String description, HttpMultipartMode mode, Charset builderCs,
                               TextStyle style, Charset textCs, String eventType, String eventJson,
                               Transfer transfer, boolean expect) {
        Case c = newCase(name, modeName(mode), description);
        MultipartEntityBuilder b = MultipartEntityBuilder.create().setMode(mode).setBoundary(BOUNDARY);
        if (builderCs != null) b.setCharset(builderCs);
        c.charset = builderCs;
        List<String[]> texts = new ArrayList<>();
        texts.add(new String[] {"server_composition", "sandbox"});
        texts.add(new String[] {"event_type", eventType});
        texts.add(new String[] {"event", eventJson});
        texts.add(new String[] {"api_key", "k3y-ABC_123.xyz"});
        addTexts(c, b, mode, style, textCs, texts);
        finishMultipart(c, b, mode, headerCharset(mode, builderCs), transfer, expect);
        return c;
    }

    static void defineCases() {
        final boolean EXPECT = true, NO = false;
        final HttpMultipartMode STRICT = HttpMultipartMode.STRICT, BROWSER = HttpMultipartMode.BROWSER_COMPATIBLE,
            RFC6532 = HttpMultipartMode.RFC6532;
        final Transfer CL = Transfer.CONTENT_LENGTH, CH = Transfer.CHUNKED, CHS = Transfer.CHUNKED_STREAM;

        // ---------------- event webhook, form ----------------
        form("form-utf8-deliveries", "event webhook, deliveries, UrlEncodedFormEntity in UTF-8 (Japanese subject with é), api_key",
            UTF8, true, "deliveries", deliveriesJson(SUBJECT_UTF8), true, CL, NO);
        form("form-utf8-bounces", "event webhook, bounces (codes 2 and 1), UrlEncodedFormEntity in UTF-8, no api_key",
            UTF8, true, "bounces", bouncesJson(SUBJECT_UTF8), false, CL, NO);
        form("form-latin1-explicit", "event webhook, deliveries, UrlEncodedFormEntity in ISO-8859-1: Café is sent as Caf%E9, charset=ISO-8859-1 on the Content-Type",
            LATIN1, true, "deliveries", deliveriesJson(SUBJECT_LATIN1), true, CL, NO);
        Case lossy = form("form-latin1-explicit-lossy-japanese", "event webhook, deliveries, UrlEncodedFormEntity in ISO-8859-1 with a Japanese subject: HttpClient replaces each unmappable character with '?' (%3F); é survives as %E9",
            LATIN1, true, "deliveries", deliveriesJson(SUBJECT_UTF8), true, CL, NO);
        lossy.notes.add("lossy: the Japanese characters were replaced by '?' before sending; expected differs from sent.");
        form("form-default-charset-latin1-unlabelled", "event webhook, deliveries, new UrlEncodedFormEntity(params) without a charset: ISO-8859-1 bytes (Caf%E9) and no charset parameter",
            LATIN1, false, "deliveries", deliveriesJson(SUBJECT_LATIN1), true, CL, NO);
        form("form-sjis-explicit", "event webhook, deliveries, UrlEncodedFormEntity in Shift_JIS: Japanese subject percent-encoded as Shift_JIS bytes (表 = %95%5C), charset=Shift_JIS",
            SJIS, true, "deliveries", deliveriesJson(SUBJECT_JP), true, CL, NO);
        Case t1 = form("form-sjis-jis-table-chars", "event webhook, deliveries, Shift_JIS, subject with the seven characters whose Java (JIS) and WHATWG (Windows) tables differ: 〜 − ‖ — ¢ £ ¬",
            SJIS, true, "deliveries", deliveriesJson(SUBJECT_TABLE), true, CL, NO);
        t1.notes.add("expected uses Java's Shift_JIS table (the characters as sent); expected_whatwg shows what a WHATWG decoder (encoding_rs) returns: ～ － ∥ ― ￠ ￡ ￢.");
        form("form-eucjp-explicit", "event webhook, deliveries, UrlEncodedFormEntity in EUC-JP, charset=EUC-JP",
            EUCJP, true, "deliveries", deliveriesJson(SUBJECT_JP), true, CL, NO);
        form("form-iso2022jp-explicit", "event webhook, deliveries, UrlEncodedFormEntity in ISO-2022-JP: escape sequences percent-encoded (%1B%24B ... %1B%28B), charset=ISO-2022-JP",
            JIS, true, "deliveries", deliveriesJson(SUBJECT_JP), true, CL, NO);
        form("form-utf8-chunked", "event webhook, deliveries, UTF-8 form, entity.setChunked(true)",
            UTF8, true, "deliveries", deliveriesJson(SUBJECT_UTF8), true, CH, NO);
        form("form-utf8-expect-continue", "event webhook, deliveries, UTF-8 form, Expect: 100-continue",
            UTF8, true, "deliveries", deliveriesJson(SUBJECT_UTF8), true, CL, EXPECT);
        form("form-latin1-chunked-expect-continue", "event webhook, deliveries, ISO-8859-1 form, chunked and Expect: 100-continue",
            LATIN1, true, "deliveries", deliveriesJson(SUBJECT_LATIN1), true, CH, EXPECT);

        // ---------------- event webhook, JSON ----------------
        json("json-utf8-deliveries", "event webhook, deliveries, StringEntity with ContentType.APPLICATION_JSON (UTF-8)",
            "deliveries", deliveriesJson(SUBJECT_UTF8), true, CL, NO);
        json("json-utf8-bounces-chunked", "event webhook, bounces, APPLICATION_JSON, chunked",
            "bounces", bouncesJson(SUBJECT_UTF8), true, CH, NO);
        json("json-utf8-unlabelled", "event webhook, deliveries, UTF-8 JSON bytes with Content-Type application/json and no charset",
            "deliveries", deliveriesJson(SUBJECT_UTF8), false, CL, NO);

        // ---------------- event webhook, multipart ----------------
        multipartEvent("multipart-strict-event-deliveries", "event webhook as multipart (STRICT, builder charset default), text parts labelled text/plain; charset=UTF-8",
            STRICT, null, TextStyle.LABELLED, UTF8, "deliveries", deliveriesJson(SUBJECT_UTF8), CL, NO);
        multipartEvent("multipart-browser-event-bounces", "event webhook as multipart (BROWSER_COMPATIBLE, setCharset UTF-8), parts unlabelled (UTF-8 bytes)",
            BROWSER, UTF8, TextStyle.LABELLED, UTF8, "bounces", bouncesJson(SUBJECT_UTF8), CL, NO);

        // ---------------- inbound webhook, multipart: STRICT ----------------
        Case s1 = multipart("multipart-strict-default", "inbound, STRICT, builder charset default, text parts labelled UTF-8; file names with non-ASCII become '?'",
            STRICT, null, TextStyle.LABELLED, UTF8, mailUtf8(), CL, NO);
        s1.notes.add("lossy file names: STRICT writes part headers in US-ASCII.");
        multipart("multipart-strict-utf8", "inbound, STRICT, setCharset(UTF-8) (on the request Content-Type only), text parts labelled UTF-8",
            STRICT, UTF8, TextStyle.LABELLED, UTF8, mailUtf8(), CL, NO);
        Case s3 = multipart("multipart-strict-plain-textbody", "inbound, STRICT, setCharset(UTF-8), plain addTextBody(name, value): parts labelled ISO-8859-1, Japanese text replaced by '?'",
            STRICT, UTF8, TextStyle.PLAIN, null, mailUtf8(), CL, NO);
        s3.notes.add("lossy: plain addTextBody uses text/plain; charset=ISO-8859-1, so Japanese became '?' (é survives as 0xE9).");
        multipart("multipart-strict-sjis", "inbound, STRICT, setCharset(Shift_JIS), text parts labelled text/plain; charset=Shift_JIS",
            STRICT, SJIS, TextStyle.LABELLED, SJIS, mailJapanese(), CL, NO);
        multipart("multipart-strict-eucjp", "inbound, STRICT, setCharset(EUC-JP), text parts labelled EUC-JP",
            STRICT, EUCJP, TextStyle.LABELLED, EUCJP, mailJapanese(), CL, NO);
        multipart("multipart-strict-iso2022jp", "inbound, STRICT, setCharset(ISO-2022-JP), text parts labelled ISO-2022-JP",
            STRICT, JIS, TextStyle.LABELLED, JIS, mailJapanese(), CL, NO);
        multipart("multipart-strict-utf8-unlabelled-parts", "inbound, STRICT, setCharset(UTF-8), text parts as addBinaryBody(UTF-8 bytes, text/plain without charset): unlabelled parts under a request charset",
            STRICT, UTF8, TextStyle.BYTES_UNLABELLED, UTF8, mailUtf8(), CL, NO);
        multipart("multipart-strict-sjis-unlabelled-parts", "inbound, STRICT, setCharset(Shift_JIS), text parts as Shift_JIS bytes with text/plain and no charset: the request's charset=Shift_JIS is the only label",
            STRICT, SJIS, TextStyle.BYTES_UNLABELLED, SJIS, mailJapanese(), CL, NO);
        multipart("multipart-strict-utf8-chunked", "inbound, STRICT, setCharset(UTF-8), labelled UTF-8, one 6 KB attachment, chunked (HttpEntityWrapper with isChunked=true)",
            STRICT, UTF8, TextStyle.LABELLED, UTF8, mailBig(), CH, NO);

        // ---------------- inbound webhook, multipart: BROWSER_COMPATIBLE ----------------
        Case b1 = multipart("multipart-browser-default", "inbound, BROWSER_COMPATIBLE, builder charset default (US-ASCII headers: non-ASCII file names become '?'), text parts UTF-8 and unlabelled",
            BROWSER, null, TextStyle.LABELLED, UTF8, mailUtf8(), CL, NO);
        b1.notes.add("lossy file names: with no builder charset BROWSER_COMPATIBLE writes headers in US-ASCII.");
        multipart("multipart-browser-utf8", "inbound, BROWSER_COMPATIBLE, setCharset(UTF-8): raw UTF-8 file names, unlabelled UTF-8 text parts, charset=UTF-8 on the request",
            BROWSER, UTF8, TextStyle.LABELLED, UTF8, mailUtf8(), CL, NO);
        multipart("multipart-browser-sjis-filename", "inbound, BROWSER_COMPATIBLE, setCharset(Shift_JIS): raw Shift_JIS file names (表/ソ/能 carry 0x5C bytes, and 部品一覧表 ends in 0x5C just before the closing quote), unlabelled Shift_JIS text parts, charset=Shift_JIS on the request",
            BROWSER, SJIS, TextStyle.LABELLED, SJIS, mailJapanese(), CL, NO);
        multipart("multipart-browser-eucjp", "inbound, BROWSER_COMPATIBLE, setCharset(EUC-JP): raw EUC-JP file names and unlabelled EUC-JP text parts",
            BROWSER, EUCJP, TextStyle.LABELLED, EUCJP, mailJapanese(), CL, NO);
        multipart("multipart-browser-iso2022jp", "inbound, BROWSER_COMPATIBLE, setCharset(ISO-2022-JP): file names in ISO-2022-JP (※ writes a 0x22 '\"' byte and 資/事/音 a 0x3B ';' byte inside the escape sequence), unlabelled ISO-2022-JP text parts",
            BROWSER, JIS, TextStyle.LABELLED, JIS, mailJapanese(), CL, NO);
        multipart("multipart-browser-latin1", "inbound, BROWSER_COMPATIBLE, setCharset(ISO-8859-1): Latin-1 mail, raw ISO-8859-1 file names, unlabelled Latin-1 text parts",
            BROWSER, LATIN1, TextStyle.LABELLED, LATIN1, mailLatin1(), CL, NO);
        Case b7 = multipart("multipart-browser-utf8-plain-textbody-mislabelled", "inbound, BROWSER_COMPATIBLE, setCharset(UTF-8), plain addTextBody: the request says charset=UTF-8 but the unlabelled text parts are ISO-8859-1 bytes (Japanese became '?', é is a lone 0xE9 byte)",
            BROWSER, UTF8, TextStyle.PLAIN, null, mailUtf8(), CL, NO);
        b7.notes.add("mislabelled and lossy: the text bodies are ISO-8859-1 (HttpMime's plain addTextBody) while the only label, on the request, says UTF-8. "
            + "expected shows the ISO-8859-1 reading; a parser that follows the label cannot read subject/text/html, and should say so for those fields.");
        multipart("multipart-browser-sjis-jis-table-chars", "inbound, BROWSER_COMPATIBLE, setCharset(Shift_JIS), subject/text/file name with 〜 − ‖ — ¢ £ ¬ (Java and WHATWG tables differ)",
            BROWSER, SJIS, TextStyle.LABELLED, SJIS, mailTable(), CL, NO);
        multipart("multipart-strict-eucjp-jis-table-chars", "inbound, STRICT, text parts labelled EUC-JP with 〜 − ‖ — ¢ £ ¬",
            STRICT, EUCJP, TextStyle.LABELLED, EUCJP, mailTable(), CL, NO);
        multipart("multipart-browser-utf8-path-filenames", "inbound, BROWSER_COMPATIBLE, setCharset(UTF-8), file names that look like paths (..\\..\\, dir/sub/, C:\\Users\\...)",
            BROWSER, UTF8, TextStyle.LABELLED, UTF8, mailPaths(), CL, NO);
        multipart("multipart-browser-utf8-many-attachments", "inbound, BROWSER_COMPATIBLE, setCharset(UTF-8), seven attachments incl. an empty file, an empty file name and a name with parentheses",
            BROWSER, UTF8, TextStyle.LABELLED, UTF8, mailMany(), CL, NO);
        multipart("multipart-browser-utf8-no-attachments", "inbound, BROWSER_COMPATIBLE, setCharset(UTF-8), attachments=0 and no file part",
            BROWSER, UTF8, TextStyle.LABELLED, UTF8, new Mail(mailUtf8().subject(), "山田 太郎", mailUtf8().text(), mailUtf8().html(), List.of()), CL, NO);
        multipart("multipart-browser-utf8-chunked-stream", "inbound, BROWSER_COMPATIBLE, setCharset(UTF-8), 6 KB attachment, sent as an InputStreamEntity of length -1 (chunked)",
            BROWSER, UTF8, TextStyle.LABELLED, UTF8, mailBig(), CHS, NO);
        multipart("multipart-browser-sjis-chunked-expect-continue", "inbound, BROWSER_COMPATIBLE, setCharset(Shift_JIS), chunked and Expect: 100-continue",
            BROWSER, SJIS, TextStyle.LABELLED, SJIS, mailJapanese(), CH, EXPECT);

        // ---------------- inbound webhook, multipart: RFC6532 ----------------
        multipart("multipart-rfc6532-default", "inbound, RFC6532, builder charset default: raw UTF-8 file names, text parts labelled UTF-8, no charset on the request",
            RFC6532, null, TextStyle.LABELLED, UTF8, mailUtf8(), CL, NO);
        multipart("multipart-rfc6532-utf8", "inbound, RFC6532, setCharset(UTF-8), text parts labelled UTF-8",
            RFC6532, UTF8, TextStyle.LABELLED, UTF8, mailUtf8(), CL, NO);
        Case r3 = multipart("multipart-rfc6532-sjis", "inbound, RFC6532, setCharset(Shift_JIS): the request says charset=Shift_JIS and text parts are labelled Shift_JIS, but the file names are raw UTF-8",
            RFC6532, SJIS, TextStyle.LABELLED, SJIS, mailJapanese(), CL, NO);
        r3.notes.add("trap: the request charset (Shift_JIS) is not the charset of the part headers (UTF-8 in RFC6532 mode).");
        Case r4 = multipart("multipart-rfc6532-plain-textbody", "inbound, RFC6532, builder default, plain addTextBody: parts labelled ISO-8859-1, Japanese text replaced by '?'",
            RFC6532, null, TextStyle.PLAIN, null, mailUtf8(), CL, NO);
        r4.notes.add("lossy: plain addTextBody uses text/plain; charset=ISO-8859-1.");
        multipart("multipart-rfc6532-utf8-expect-continue", "inbound, RFC6532, setCharset(UTF-8), Expect: 100-continue with Content-Length",
            RFC6532, UTF8, TextStyle.LABELLED, UTF8, mailUtf8(), CL, EXPECT);
    }

    // ------------------------------------------------------------------
    // Sending
    // ------------------------------------------------------------------

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: Capture <port> <manifest-path>");
            System.exit(2);
        }
        final int port = Integer.parseInt(args[0]);
        Path manifest = Path.of(args[1]);
        defineCases();

        DnsResolver loopback = host -> new InetAddress[] {InetAddress.getByAddress(host, new byte[] {127, 0, 0, 1})};
        ConnectionSocketFactory toPort = new PlainConnectionSocketFactory() {
            @Override
            public Socket connectSocket(int timeout, Socket socket, HttpHost host, InetSocketAddress remote,
                                        InetSocketAddress local, HttpContext context) throws IOException {
                return super.connectSocket(timeout, socket, host,
                    new InetSocketAddress(remote.getAddress(), port), local, context);
            }
        };
        Registry<ConnectionSocketFactory> registry =
            RegistryBuilder.<ConnectionSocketFactory>create().register("http", toPort).build();
        PoolingHttpClientConnectionManager cm = new PoolingHttpClientConnectionManager(registry, loopback);

        int failures = 0;
        try (CloseableHttpClient client = HttpClients.custom()
                .setConnectionManager(cm)
                .setUserAgent(USER_AGENT)
                .setRetryHandler(new DefaultHttpRequestRetryHandler(0, false))
                .build()) {
            for (Case c : CASES) {
                HttpPost post = new HttpPost(URL);
                post.setEntity(c.entity);
                if (c.expect) post.setConfig(RequestConfig.custom().setExpectContinueEnabled(true).build());
                c.contentType = c.entity.getContentType().getValue();
                try (CloseableHttpResponse resp = client.execute(post)) {
                    EntityUtils.consume(resp.getEntity());
                    int status = resp.getStatusLine().getStatusCode();
                    System.out.println(status + " " + c.name);
                    if (status != 200) failures++;
                }
            }
        }
        writeManifest(manifest);
        if (failures > 0) {
            System.err.println(failures + " request(s) failed");
            System.exit(1);
        }
    }

    // ------------------------------------------------------------------
    // Manifest
    // ------------------------------------------------------------------

    static String whatwg(String s, Charset cs) {
        if (cs == null) return s;
        String n = cs.name();
        if (!(n.equals("Shift_JIS") || n.equals("EUC-JP") || n.equals("ISO-2022-JP"))) return s;
        for (String[] m : WHATWG_FORMS) s = s.replace(m[0], m[1]);
        return s;
    }

    static void writeManifest(Path path) throws IOException {
        StringBuilder sb = new StringBuilder();
        sb.append("[\n");
        for (int i = 0; i < CASES.size(); i++) {
            Case c = CASES.get(i);
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("case", c.name);
            m.put("file", c.name + ".http");
            m.put("description", c.description);
            m.put("mode", c.mode);
            m.put("charset", c.charset == null ? null : c.charset.name());
            m.put("transfer", c.transfer == Transfer.CONTENT_LENGTH ? "content-length" : "chunked");
            m.put("expect_continue", c.expect);
            m.put("content_type", c.contentType);
            m.put("boundary", c.mode.startsWith("multipart") ? BOUNDARY : null);

            Map<String, Object> sent = new LinkedHashMap<>();
            List<Object> fields = new ArrayList<>();
            for (String[] f : c.fields) fields.add(List.of(f[0], f[1]));
            sent.put("fields", fields);
            List<Object> files = new ArrayList<>();
            for (FileSpec f : c.files) {
                Map<String, Object> fm = new LinkedHashMap<>();
                fm.put("field", f.field());
                fm.put("filename", f.filename());
                fm.put("content_type", f.contentType().toString());
                fm.put("data_base64", Base64.getEncoder().encodeToString(f.data()));
                files.add(fm);
            }
            sent.put("files", files);
            m.put("sent", sent);

            boolean lossless = true;
            for (int k = 0; k < c.fields.size(); k++) lossless &= c.fields.get(k)[1].equals(c.expFields.get(k)[1]);
            for (int k = 0; k < c.files.size(); k++) lossless &= c.files.get(k).filename().equals(c.expFiles.get(k)[1]);
            m.put("lossless", lossless);
            m.put("expected", expected(c, false));
            Map<String, Object> ew = expected(c, true);
            m.put("expected_whatwg", ew.equals(m.get("expected")) ? null : ew);
            m.put("parts", c.mode.startsWith("multipart") ? c.parts : null);
            m.put("notes", c.notes);
            m.put("varies", c.varies);
            sb.append("  ");
            json(sb, m, "  ");
            sb.append(i + 1 < CASES.size() ? ",\n" : "\n");
        }
        sb.append("]\n");
        Files.createDirectories(path.toAbsolutePath().getParent());
        try (Writer w = new OutputStreamWriter(Files.newOutputStream(path), UTF8)) {
            w.write(sb.toString());
        }
    }

    static Map<String, Object> expected(Case c, boolean whatwg) {
        Map<String, Object> e = new LinkedHashMap<>();
        List<Object> fields = new ArrayList<>();
        for (int k = 0; k < c.expFields.size(); k++) {
            String[] f = c.expFields.get(k);
            fields.add(List.of(f[0], whatwg ? whatwg(f[1], c.expFieldCs.get(k)) : f[1]));
        }
        e.put("fields", fields);
        List<Object> files = new ArrayList<>();
        for (int k = 0; k < c.expFiles.size(); k++) {
            Object[] f = c.expFiles.get(k);
            Map<String, Object> fm = new LinkedHashMap<>();
            fm.put("field", f[0]);
            fm.put("filename", whatwg ? whatwg((String) f[1], c.expFileCs.get(k)) : f[1]);
            fm.put("content_type", f[2]);
            files.add(fm); // file data is never altered: compare with sent.files[i].data_base64
        }
        e.put("files", files);
        return e;
    }

    @SuppressWarnings("unchecked")
    static void json(StringBuilder sb, Object v, String indent) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof Boolean) {
            sb.append(v);
        } else if (v instanceof String s) {
            sb.append('"');
            for (int i = 0; i < s.length(); i++) {
                char ch = s.charAt(i);
                switch (ch) {
                    case '"': sb.append("\\\""); break;
                    case '\\': sb.append("\\\\"); break;
                    case '\n': sb.append("\\n"); break;
                    case '\r': sb.append("\\r"); break;
                    case '\t': sb.append("\\t"); break;
                    default:
                        if (ch < 0x20 || ch == 0x7f) sb.append(String.format("\\u%04x", (int) ch));
                        else sb.append(ch);
                }
            }
            sb.append('"');
        } else if (v instanceof Map) {
            Map<String, Object> m = (Map<String, Object>) v;
            String inner = indent + "  ";
            sb.append("{\n");
            int n = 0;
            for (Map.Entry<String, Object> en : m.entrySet()) {
                sb.append(inner);
                json(sb, en.getKey(), inner);
                sb.append(": ");
                json(sb, en.getValue(), inner);
                sb.append(++n < m.size() ? ",\n" : "\n");
            }
            sb.append(indent).append('}');
        } else if (v instanceof List) {
            List<Object> l = (List<Object>) v;
            if (l.isEmpty()) {
                sb.append("[]");
                return;
            }
            boolean flat = l.stream().allMatch(x -> x instanceof String);
            if (flat && l.size() == 2) { // a [name, value] pair on one line
                sb.append('[');
                json(sb, l.get(0), indent);
                sb.append(", ");
                json(sb, l.get(1), indent);
                sb.append(']');
                return;
            }
            String inner = indent + "  ";
            sb.append("[\n");
            for (int i = 0; i < l.size(); i++) {
                sb.append(inner);
                json(sb, l.get(i), inner);
                sb.append(i + 1 < l.size() ? ",\n" : "\n");
            }
            sb.append(indent).append(']');
        } else {
            throw new IllegalArgumentException("cannot write " + v.getClass());
        }
    }
}
