"""Log lines a client cannot forge, each at most MAX_LINE_BYTES long, each ending with its request id.

final_app's formatter (RequestIdFormatter), the fields that name a request (request_fields), and the
prediction log's messages (PREDICTION_LOG, final_app/public.py). gunicorn's access line is escaped
the same way by gunicorn.conf.py.
"""
import json
import logging
import re

import orjson
from flask import has_request_context, request

# Where final_app/public.py's middleware leaves what it needs in the WSGI environ of a request.
REQUEST_ID_KEY = "final_app.request_id"
ROWS_KEY = "final_app.rows"  # the predict view sets these: the rows it answered, and
DATA_KEY = "final_app.data"  # (rows as sent, predictions) when the prediction log writes them
# Set once the prediction log has written the request's line: gunicorn.conf.py's logger then
# writes no access line for it (the same request id, status and time, without the model's side).
PREDICTION_LOGGED_KEY = "final_app.prediction_logged"


def current_request_id():
    """Return the id of the request being answered, or None outside a request or with ids off."""
    return request.environ.get(REQUEST_ID_KEY) if has_request_context() else None


# --- log lines a client cannot forge ------------------------------------------------------------
#
# Heroku (and honcho, and most log tools) start a new log line at every line break, and read a
# line's fields as logfmt: key=value pairs separated by spaces. So every value that may hold a
# client's text (a path, a method, a message quoting a value) is written with logfmt_value, which
# leaves a plain value bare and puts anything else in double quotes with JSON's escapes: a line
# break, a quote, a backslash or a space inside it cannot end the line or start a field of its own,
# and the line holds printable ASCII only.

# The longest line final_app writes, in bytes with its line break. Heroku's log router cuts lines at
# 10,000 bytes; this is Linux's PIPE_BUF, the most one write() to a pipe puts in it whole, so the
# lines of gunicorn's workers, which share one stdout, can never be written into each other.
MAX_LINE_BYTES = 4096
# Room a line keeps for what the formatter adds to a message: "INFO final_app: " and " request_id=<id>".
LINE_OVERHEAD_BYTES = 300
MAX_MESSAGE_BYTES = MAX_LINE_BYTES - LINE_OVERHEAD_BYTES
# The most characters of one value of a field, and of one line of a traceback, once quoted.
MAX_VALUE_CHARACTERS = 1000
PLAIN_LOGFMT_VALUE = re.compile(r"[A-Za-z0-9._:/+-]+")
# What would end a line or hide text on a terminal: C0 and C1 controls, DEL, Unicode line separators.
LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def logfmt_value(value, limit=MAX_VALUE_CHARACTERS):
    """Return value as a logfmt value of at most limit characters: bare when plain, else quoted JSON text."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if len(text) <= limit and PLAIN_LOGFMT_VALUE.fullmatch(text):
        return text
    quoted = json.dumps(text)  # ASCII only: every other character as a \u escape
    while len(quoted) > limit:  # cut the text, not its escapes, and say so with "..."
        text = text[:max(len(text) * limit // len(quoted) - 4, 0)]
        quoted = json.dumps(text + "...")
    return quoted


def request_fields(status, message):
    """Return the logfmt fields that say which request got which answer: method, path, status, message."""
    return (f"method={logfmt_value(request.method, 40)} path={logfmt_value(request.path, 400)} "
            f"status={status} message={logfmt_value(message)}")


def escape_line_breaks(text):
    """Return text with each line break or control character written as its JSON escape (\\n, \\u001b)."""
    return LINE_BREAKING.sub(lambda found: json.dumps(found.group())[1:-1], text)


class RequestIdFormatter(logging.Formatter):
    """final_app's formatter: one line per message, a line per traceback line, each ending with the request id.

    Its format may use only %(levelname)s, %(name)s and %(message)s, as final_app's LOG_FORMAT does,
    so that info_line can write a line without a LogRecord.
    """

    def format(self, record):
        """Return the record's message on one line, then each line of its traceback as a logfmt line."""
        request_id = current_request_id()
        ending = "" if request_id is None else f" request_id={request_id}"
        record.message = record.getMessage()
        if LINE_BREAKING.search(record.message):  # a message is one line, whatever it holds,
            record.message = escape_line_breaks(record.message)
        if len(record.message) > MAX_MESSAGE_BYTES:  # and fits in one (final_app's are ASCII)
            record.message = record.message[:MAX_MESSAGE_BYTES - 3] + "..."
        lines = [self.formatMessage(record) + ending]
        # A traceback can quote a client (an exception's message), so none of its lines is written
        # as it is: each becomes a line of its own, its text quoted. The record stays one record,
        # written at once, and every line of it carries the request id to find them together.
        for line in self.traceback_lines(record):
            lines.append(f"{record.levelname} {record.name}: traceback line={logfmt_value(line)}{ending}")
        return "\n".join(lines)

    def traceback_lines(self, record):
        """Return the lines of the record's traceback and stack, as logging.Formatter would write them."""
        text = ""
        if record.exc_info:
            text = self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text.splitlines()

    def info_line(self, logger_name, message, request_id):
        """Return the line format() writes for an INFO record of logger_name with this message."""
        fields = {"levelname": "INFO", "name": logger_name, "message": message}
        return f"{self._fmt % fields} request_id={request_id}"


def log_info(logger, messages, request_id):
    """Log each of messages at INFO with its request id: the lines logger.info writes, made cheaply.

    logger.info builds a LogRecord (the time, the thread, the process, the calling line), runs
    the formatter and takes locks for every line: about 8 µs, next to the 0.1 ms Flask spends on a
    one-row prediction. A handler with final_app's formatter gets each finished line instead, in one
    write and a flush under the handler's lock, as StreamHandler.emit writes a record; any other
    handler gets a record as usual. Return whether the lines were logged (not when the level is above INFO).
    """
    if not logger.isEnabledFor(logging.INFO):
        return False
    for handler in logger.handlers:
        formatter = handler.formatter
        if (isinstance(formatter, RequestIdFormatter) and isinstance(handler, logging.StreamHandler)
                and handler.level <= logging.INFO and not handler.filters):
            for message in messages:  # a write per line: each reaches the pipe whole (MAX_LINE_BYTES)
                line = formatter.info_line(logger.name, message, request_id) + handler.terminator
                with handler.lock:
                    handler.stream.write(line)
                    handler.stream.flush()
        else:
            for message in messages:
                handler.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, (), None))
    return True


def prediction_message(model_version, rows, status, seconds):
    """Return the prediction log's message, in logfmt: the model version, the rows, the status, the time."""
    # Plain formatting, not a loop over fields: this runs on every prediction. No value here comes
    # from the client: the model's own version, numbers, and a status.
    return f"prediction model_version={model_version} rows={rows} status={status} duration_ms={seconds * 1000:.2f}"


def escaped_json(value):
    """Return value as compact JSON text, escaped to go between the double quotes of a logfmt value."""
    # orjson writes the numbers as the response does (5e-7), at a fifth of json's time per row.
    try:
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # an integer over 64 bits, which json's parser lets through
        text = json.dumps(value, separators=(",", ":"))
    return json.dumps(text)[1:-1]


def messages_with_data(message, instances, predictions):
    """Return the prediction log's messages with the rows and predictions: one, or parts that each fit a line.

    A large request does not fit in a line (10,000 rows of iris hold 1.6 MB as logged): Heroku's
    log router would cut it into pieces at 10,000 bytes, the request id in the last one. So the
    rows are split into parts of whole rows, each a line of its own (part=2/5 part_rows=58-115)
    with the model version, the status and the request id, and its rows and predictions as JSON
    arrays: every line can be read alone, and the parts together hold every row. Splitting keeps
    what PREDICTION_LOG=with-data is for, a record of what the model was asked; a summary would
    not. A single row too long for a line is logged as instances=too-long predictions=too-long.
    """
    escaped = [(escaped_json(row), escaped_json(prediction)) for row, prediction in zip(instances, predictions)]
    whole = message + data_fields(escaped)
    if len(whole) <= MAX_MESSAGE_BYTES:
        return [whole]
    room = MAX_MESSAGE_BYTES - len(message) - len(" part=99999/99999 part_rows=9999999-9999999")
    parts = split_rows(escaped, room)
    return [f"{message} part={number}/{len(parts)} part_rows={first}-{end - 1}{data_fields(escaped[first:end], room)}"
            for number, (first, end) in enumerate(parts, start=1)]


def data_fields(escaped, room=None):
    """Return ' instances="[...]" predictions="[...]"' for these escaped rows, or too-long if longer than room."""
    fields = (f' instances="[{",".join(row for row, _ in escaped)}]"'
              f' predictions="[{",".join(prediction for _, prediction in escaped)}]"')
    if room is not None and len(fields) > room:
        return " instances=too-long predictions=too-long"
    return fields


def split_rows(escaped, room):
    """Return (first, end) ranges of the rows, in order, whose data_fields fit in room (each at least one row)."""
    empty = len(data_fields([]))
    parts, first, size = [], 0, empty
    for index, (row, prediction) in enumerate(escaped):
        row_size = len(row) + len(prediction) + 2  # and a comma after each
        if index > first and size + row_size > room:
            parts.append((first, index))
            first, size = index, empty
        size += row_size
    parts.append((first, len(escaped)))
    return parts
