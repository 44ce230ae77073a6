package dev.kaon.spark;

/**
 * Just enough JSON for the event protocol: writing the fields of an object, quoting strings, and
 * checking that a value handed in by a user job is well-formed JSON.
 *
 * <p>Hand-written on purpose: the JSON libraries on Spark's class path (Jackson, json4s) differ
 * between Spark versions, and the listener jar must not depend on any of them.
 */
final class Json {
    private final StringBuilder out = new StringBuilder(128);

    /** A string field; {@code null} is written as JSON null. */
    Json str(String key, String value) {
        key(key);
        if (value == null) {
            out.append("null");
        } else {
            quote(out, value);
        }
        return this;
    }

    Json num(String key, long value) {
        key(key);
        out.append(value);
        return this;
    }

    /** A number field; {@code null} is written as JSON null. */
    Json num(String key, Long value) {
        key(key);
        out.append(value == null ? "null" : value.toString());
        return this;
    }

    Json bool(String key, boolean value) {
        key(key);
        out.append(value);
        return this;
    }

    /** A field whose value is already-serialized JSON text (checked with {@link #isValid}). */
    Json raw(String key, String json) {
        key(key);
        out.append(json);
        return this;
    }

    /** The fields written so far, comma-separated, without the braces. */
    String fields() {
        return out.toString();
    }

    private void key(String key) {
        if (out.length() > 0) {
            out.append(',');
        }
        quote(out, key);
        out.append(':');
    }

    private static final char[] HEX = "0123456789abcdef".toCharArray();

    /**
     * Appends {@code s} as a JSON string. Unpaired surrogates (possible in a Java string, e.g. a
     * truncated exception message) become U+FFFD: strict parsers such as serde_json reject them
     * both raw and as \\u escapes.
     */
    static void quote(StringBuilder out, String s) {
        out.append('"');
        int n = s.length();
        for (int i = 0; i < n; i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': out.append("\\\""); break;
                case '\\': out.append("\\\\"); break;
                case '\n': out.append("\\n"); break;
                case '\r': out.append("\\r"); break;
                case '\t': out.append("\\t"); break;
                case '\b': out.append("\\b"); break;
                case '\f': out.append("\\f"); break;
                default:
                    if (c < 0x20) {
                        out.append("\\u00").append(HEX[c >> 4]).append(HEX[c & 0xf]);
                    } else if (Character.isHighSurrogate(c)) {
                        if (i + 1 < n && Character.isLowSurrogate(s.charAt(i + 1))) {
                            out.append(c).append(s.charAt(++i));
                        } else {
                            out.append('\uFFFD');
                        }
                    } else if (Character.isLowSurrogate(c)) {
                        out.append('\uFFFD');
                    } else {
                        out.append(c);
                    }
            }
        }
        out.append('"');
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder(s.length() + 2);
        quote(b, s);
        return b.toString();
    }

    /** Whether {@code text} is exactly one JSON value (RFC 8259), with optional whitespace around. */
    static boolean isValid(String text) {
        if (text == null) {
            return false;
        }
        Checker c = new Checker(text);
        try {
            c.ws();
            c.value(0);
            c.ws();
            return c.pos == text.length();
        } catch (Malformed e) {
            return false;
        }
    }

    /** Thrown (without a stack trace) by the checker at the first syntax error. */
    private static final class Malformed extends RuntimeException {
        private static final long serialVersionUID = 1L;

        Malformed() {
            super(null, null, false, false);
        }
    }

    private static final class Checker {
        private static final int MAX_DEPTH = 512;
        private final String s;
        int pos;

        Checker(String s) {
            this.s = s;
        }

        private char peek() {
            return pos < s.length() ? s.charAt(pos) : '\0';
        }

        private static Malformed bad() {
            return new Malformed();
        }

        void ws() {
            while (pos < s.length()) {
                char c = s.charAt(pos);
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                    return;
                }
                pos++;
            }
        }

        private void expect(char c) {
            if (peek() != c) {
                throw bad();
            }
            pos++;
        }

        void value(int depth) {
            if (depth > MAX_DEPTH) {
                throw bad();
            }
            char c = peek();
            switch (c) {
                case '{':
                    pos++;
                    ws();
                    if (peek() == '}') {
                        pos++;
                        return;
                    }
                    while (true) {
                        ws();
                        if (peek() != '"') {
                            throw bad();
                        }
                        string();
                        ws();
                        expect(':');
                        ws();
                        value(depth + 1);
                        ws();
                        if (peek() == ',') {
                            pos++;
                            continue;
                        }
                        expect('}');
                        return;
                    }
                case '[':
                    pos++;
                    ws();
                    if (peek() == ']') {
                        pos++;
                        return;
                    }
                    while (true) {
                        ws();
                        value(depth + 1);
                        ws();
                        if (peek() == ',') {
                            pos++;
                            continue;
                        }
                        expect(']');
                        return;
                    }
                case '"':
                    string();
                    return;
                case 't':
                    literal("true");
                    return;
                case 'f':
                    literal("false");
                    return;
                case 'n':
                    literal("null");
                    return;
                default:
                    number();
            }
        }

        private void literal(String word) {
            if (!s.startsWith(word, pos)) {
                throw bad();
            }
            pos += word.length();
        }

        private void string() {
            pos++; // the opening quote
            while (true) {
                if (pos >= s.length()) {
                    throw bad();
                }
                char c = s.charAt(pos++);
                if (c == '"') {
                    return;
                }
                if (c < 0x20) {
                    throw bad();
                }
                if (c != '\\') {
                    continue;
                }
                if (pos >= s.length()) {
                    throw bad();
                }
                char e = s.charAt(pos++);
                switch (e) {
                    case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
                        break;
                    case 'u':
                        int unit = hex4();
                        if (Character.isHighSurrogate((char) unit)) {
                            // An escaped surrogate must come as a pair (serde_json insists).
                            if (!s.startsWith("\\u", pos)) {
                                throw bad();
                            }
                            pos += 2;
                            if (!Character.isLowSurrogate((char) hex4())) {
                                throw bad();
                            }
                        } else if (Character.isLowSurrogate((char) unit)) {
                            throw bad();
                        }
                        break;
                    default:
                        throw bad();
                }
            }
        }

        private int hex4() {
            if (pos + 4 > s.length()) {
                throw bad();
            }
            int v = 0;
            for (int i = 0; i < 4; i++) {
                int d = Character.digit(s.charAt(pos++), 16);
                if (d < 0) {
                    throw bad();
                }
                v = v * 16 + d;
            }
            return v;
        }

        private static boolean digit(char c) {
            return c >= '0' && c <= '9';
        }

        private void digits() {
            if (!digit(peek())) {
                throw bad();
            }
            while (digit(peek())) {
                pos++;
            }
        }

        private void number() {
            if (peek() == '-') {
                pos++;
            }
            if (peek() == '0') {
                pos++;
            } else {
                digits();
            }
            if (peek() == '.') {
                pos++;
                digits();
            }
            if (peek() == 'e' || peek() == 'E') {
                pos++;
                if (peek() == '+' || peek() == '-') {
                    pos++;
                }
                digits();
            }
        }
    }
}
