/* A gallery's enrolment journal (see include/cbir/journal.h). */
#include "config.h"

#include "cbir/journal.h"
#include "json-util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "CBIRJNL1"
#define JOURNAL_VERSION 1
#define FP_LEN 64
/* magic, version, dim, fingerprint, gallery items, gallery crc, crc */
#define GALLERY_AT (16 + FP_LEN)
#define HEADER_CRC_AT (GALLERY_AT + 8)
#define HEADER_LEN (HEADER_CRC_AT + 4)
#define RECORD_HEAD 8
#define PAYLOAD_FIXED 12        /* op, op id length, 2 zero bytes, label,
                                 * id length */

struct _CbirJournal
{
  char *path;
  guint dim;
  int fd;                       /* open for appending, -1 when read-only */
  GPtrArray *records;           /* of CbirJournalRecord* */
  guint64 dropped;
};

static void
record_free (CbirJournalRecord *r)
{
  g_free (r->id);
  g_free (r->op_id);
  g_free (r->code);
  g_free (r);
}

static void
put_u32 (guint8 *p, guint32 v)
{
  v = GUINT32_TO_LE (v);
  memcpy (p, &v, 4);
}

static guint32
get_u32 (const guint8 *p)
{
  guint32 v;
  memcpy (&v, p, 4);
  return GUINT32_FROM_LE (v);
}

static void
make_header (guint8 *h, const CbirJournalGallery *o)
{
  memset (h, 0, HEADER_LEN);
  memcpy (h, MAGIC, 8);
  put_u32 (h + 8, JOURNAL_VERSION);
  put_u32 (h + 12, o->dim);
  memcpy (h + 16, o->fingerprint, MIN (strlen (o->fingerprint), FP_LEN));
  put_u32 (h + GALLERY_AT, o->items);
  put_u32 (h + GALLERY_AT + 4, o->crc);
  put_u32 (h + HEADER_CRC_AT, cbir_crc32 (0, h, HEADER_CRC_AT));
}

void
cbir_journal_gallery_init (CbirJournalGallery *o, const CbirGallery *g)
{
  const float *f = cbir_gallery_get_features (g);
  guint n = cbir_gallery_size (g);
  guint32 crc;

  o->fingerprint = cbir_gallery_get_model_fingerprint (g);
  o->dim = cbir_gallery_get_dim (g);
  o->items = n;
  crc = cbir_crc32 (0, cbir_gallery_get_labels (g), (gsize) n * 4);
  if (f)
    crc = cbir_crc32 (crc, f, (gsize) n * o->dim * sizeof (float));
  o->crc = crc;
}

/* The payload of r (without the record head). */
static guint8 *
encode (const CbirJournalRecord *r, guint dim, gsize *len)
{
  gsize id_len = strlen (r->id);
  gsize op_len = r->op_id ? strlen (r->op_id) : 0;
  gsize n = PAYLOAD_FIXED + id_len + op_len + (r->op == CBIR_JOURNAL_ENROL ?
      (gsize) dim * 4 : 0);
  guint8 *p = g_malloc0 (RECORD_HEAD + n);
  guint8 *q = p + RECORD_HEAD;

  q[0] = (guint8) r->op;
  q[1] = (guint8) op_len;
  put_u32 (q + 4, (guint32) r->label);
  put_u32 (q + 8, (guint32) id_len);
  memcpy (q + PAYLOAD_FIXED, r->id, id_len);
  if (op_len)
    memcpy (q + PAYLOAD_FIXED + id_len, r->op_id, op_len);
  if (r->op == CBIR_JOURNAL_ENROL)
    for (guint i = 0; i < dim; i++) {
      guint32 bits;
      memcpy (&bits, &r->code[i], 4);
      put_u32 (q + PAYLOAD_FIXED + id_len + op_len + 4 * i, bits);
    }
  put_u32 (p, (guint32) n);
  put_u32 (p + 4, cbir_crc32 (0, q, n));
  *len = RECORD_HEAD + n;
  return p;
}

/* Checks a record's fields; the message says what is wrong, or NULL. */
static const char *
check_record (const CbirJournalRecord *r, guint dim)
{
  gsize id_len;

  if (r->op != CBIR_JOURNAL_ENROL && r->op != CBIR_JOURNAL_REMOVE &&
      r->op != CBIR_JOURNAL_RELABEL)
    return "unknown operation";
  if (r->id == NULL || (id_len = strlen (r->id)) == 0 ||
      id_len > CBIR_JOURNAL_MAX_ID)
    return "an id must have 1 to 1024 bytes";
  if (!g_utf8_validate (r->id, (gssize) id_len, NULL))
    return "the id is not UTF-8";
  if (r->op_id && (strlen (r->op_id) == 0 || strlen (r->op_id) >
          CBIR_JOURNAL_MAX_OP_ID || !g_utf8_validate (r->op_id, -1, NULL)))
    return "an operation id must be UTF-8 of 1 to 255 bytes";
  if (r->op == CBIR_JOURNAL_ENROL) {
    if (r->code == NULL)
      return "an enrolment needs a code";
    for (guint i = 0; i < dim; i++)
      if (!isfinite (r->code[i]))
        return "the code holds NaN or infinity";
  }
  return NULL;
}

/* Decodes one payload; NULL when it is not a valid record. */
static CbirJournalRecord *
decode (const guint8 *q, gsize n, guint dim)
{
  CbirJournalRecord *r;
  guint32 id_len, op_len;

  if (n < PAYLOAD_FIXED || q[2] || q[3])
    return NULL;
  op_len = q[1];
  id_len = get_u32 (q + 8);
  if (id_len == 0 || id_len > CBIR_JOURNAL_MAX_ID)
    return NULL;
  r = g_new0 (CbirJournalRecord, 1);
  r->op = (CbirJournalOp) q[0];
  r->label = (gint32) get_u32 (q + 4);
  if (n != PAYLOAD_FIXED + id_len + op_len + (r->op == CBIR_JOURNAL_ENROL ?
          (gsize) dim * 4 : 0) || memchr (q + PAYLOAD_FIXED, 0,
          id_len + op_len)) {
    record_free (r);
    return NULL;
  }
  r->id = g_strndup ((const char *) q + PAYLOAD_FIXED, id_len);
  if (op_len)
    r->op_id = g_strndup ((const char *) q + PAYLOAD_FIXED + id_len, op_len);
  if (r->op == CBIR_JOURNAL_ENROL) {
    r->code = g_new (float, dim);
    for (guint i = 0; i < dim; i++) {
      guint32 bits = get_u32 (q + PAYLOAD_FIXED + id_len + op_len + 4 * i);
      memcpy (&r->code[i], &bits, 4);
    }
  }
  if (check_record (r, dim)) {
    record_free (r);
    return NULL;
  }
  return r;
}

/* Reads the records of data[HEADER_LEN..len]; the offset where a torn
 * tail starts goes to *end (len when none). FALSE on corruption. */
static gboolean
replay (CbirJournal *j, const guint8 *data, gsize len, gsize *end,
    GError **error)
{
  gsize off = HEADER_LEN;

  while (off < len) {
    guint32 n, crc;
    CbirJournalRecord *r;

    if (len - off < RECORD_HEAD)
      break;                    /* torn: the head itself */
    n = get_u32 (data + off);
    crc = get_u32 (data + off + 4);
    if (n > len - off - RECORD_HEAD)
      break;                    /* torn: the payload */
    if (cbir_crc32 (0, data + off + RECORD_HEAD, n) != crc) {
      if (off + RECORD_HEAD + n == len)
        break;                  /* torn: the last record half-written */
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: the record at byte %" G_GSIZE_FORMAT " is corrupt (CRC "
          "mismatch) and others follow it", j->path, off);
      return FALSE;
    }
    r = decode (data + off + RECORD_HEAD, n, j->dim);
    if (r == NULL) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: the record at byte %" G_GSIZE_FORMAT " is not a valid "
          "enrolment, removal or relabelling", j->path, off);
      return FALSE;
    }
    g_ptr_array_add (j->records, r);
    off += RECORD_HEAD + n;
  }
  *end = off < len ? off : len;
  return TRUE;
}

CbirJournal *
cbir_journal_open (const char *path, const CbirJournalGallery *owner,
    gboolean create, GError **error)
{
  const char *fingerprint = owner->fingerprint;
  guint dim = owner->dim;
  g_autoptr (CbirJournal) j = g_new0 (CbirJournal, 1);
  g_autofree guint8 *data = NULL;
  guint8 want[HEADER_LEN];
  gsize len = 0, end;
  GError *err = NULL;

  j->path = g_strdup (path);
  j->fd = -1;
  j->dim = dim;
  j->records = g_ptr_array_new_with_free_func ((GDestroyNotify) record_free);
  if (fingerprint == NULL || strlen (fingerprint) != FP_LEN || dim == 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: a journal needs a 64-digit model fingerprint and a dimension",
        path);
    return NULL;
  }
  make_header (want, owner);

  j->fd = open (path, O_RDWR | O_APPEND | O_CLOEXEC | (create ? O_CREAT : 0),
      0666);
  if (j->fd < 0 && (errno == EACCES || errno == EROFS))
    j->fd = -2;                 /* read-only: replay only */
  if (j->fd == -1) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: %s", path,
        g_strerror (errno));
    return NULL;
  }
  if (j->fd >= 0 && flock (j->fd, LOCK_EX) != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: cannot lock: %s",
        path, g_strerror (errno));
    return NULL;
  }
  if (!g_file_get_contents (path, (gchar **) & data, &len, &err)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s", err->message);
    g_error_free (err);
    goto unlock_fail;
  }
  if (len == 0 && j->fd >= 0) {
    /* new: the header, durably */
    if (write (j->fd, want, HEADER_LEN) != HEADER_LEN || fdatasync (j->fd)) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: cannot write: %s",
          path, g_strerror (errno));
      goto unlock_fail;
    }
  } else if (len < HEADER_LEN || memcmp (data, MAGIC, 8) != 0 ||
      get_u32 (data + HEADER_CRC_AT) != cbir_crc32 (0, data, HEADER_CRC_AT)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: not a gst-cbir journal (bad or truncated header)", path);
    goto unlock_fail;
  } else if (get_u32 (data + 8) != JOURNAL_VERSION) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
        "%s: journal version %u (this build reads %u)", path,
        get_u32 (data + 8), JOURNAL_VERSION);
    goto unlock_fail;
  } else if (memcmp (data + 16, want + 16, FP_LEN) != 0 ||
      get_u32 (data + 12) != dim) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "%s: journal of another model or dimension (fingerprint %.64s, "
        "dim %u; the gallery's: %s, %u)", path, (const char *) data + 16,
        get_u32 (data + 12), fingerprint, dim);
    goto unlock_fail;
  } else if (memcmp (data + GALLERY_AT, want + GALLERY_AT, 8) != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "%s: journal of another gallery (%u items, content CRC %08x; this "
        "one: %u items, %08x): was the gallery rebuilt? Its enrolments "
        "would name other items: move the journal away", path,
        get_u32 (data + GALLERY_AT), get_u32 (data + GALLERY_AT + 4),
        owner->items, owner->crc);
    goto unlock_fail;
  } else {
    if (!replay (j, data, len, &end, error))
      goto unlock_fail;
    if (end < len) {
      j->dropped = len - end;
      if (j->fd >= 0 && ftruncate (j->fd, (off_t) end) != 0) {
        g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO,
            "%s: cannot drop a torn record: %s", path, g_strerror (errno));
        goto unlock_fail;
      }
    }
  }
  if (j->fd >= 0)
    flock (j->fd, LOCK_UN);
  return g_steal_pointer (&j);

unlock_fail:
  if (j->fd >= 0)
    flock (j->fd, LOCK_UN);
  return NULL;
}

void
cbir_journal_free (CbirJournal *j)
{
  if (!j)
    return;
  if (j->fd >= 0)
    close (j->fd);
  g_ptr_array_unref (j->records);
  g_free (j->path);
  g_free (j);
}

const char *
cbir_journal_get_path (const CbirJournal *j)
{
  return j->path;
}

guint
cbir_journal_get_dim (const CbirJournal *j)
{
  return j->dim;
}

guint
cbir_journal_n_records (const CbirJournal *j)
{
  return j->records->len;
}

const CbirJournalRecord *
cbir_journal_get (const CbirJournal *j, guint i)
{
  g_return_val_if_fail (i < j->records->len, NULL);
  return g_ptr_array_index (j->records, i);
}

guint64
cbir_journal_dropped_bytes (const CbirJournal *j)
{
  return j->dropped;
}

gboolean
cbir_journal_append (CbirJournal *j, const CbirJournalRecord *r,
    GError **error)
{
  const char *bad = check_record (r, j->dim);
  g_autofree guint8 *rec = NULL;
  CbirJournalRecord *copy;
  struct stat st;
  gsize len;
  gssize w;

  if (bad) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT, "%s: %s",
        j->path, bad);
    return FALSE;
  }
  if (j->fd < 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: read-only",
        j->path);
    return FALSE;
  }
  rec = encode (r, j->dim, &len);
  if (flock (j->fd, LOCK_EX) != 0 || fstat (j->fd, &st) != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: %s", j->path,
        g_strerror (errno));
    return FALSE;
  }
  do
    w = write (j->fd, rec, len);
  while (w < 0 && errno == EINTR);
  if (w != (gssize) len || fdatasync (j->fd) != 0) {
    int e = w < 0 ? errno : (w != (gssize) len ? ENOSPC : errno);
    /* nothing half-written stays */
    if (ftruncate (j->fd, st.st_size) != 0)
      (void) 0;
    flock (j->fd, LOCK_UN);
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: cannot write: %s",
        j->path, g_strerror (e));
    return FALSE;
  }
  flock (j->fd, LOCK_UN);
  copy = g_new0 (CbirJournalRecord, 1);
  copy->op = r->op;
  copy->label = r->label;
  copy->id = g_strdup (r->id);
  copy->op_id = g_strdup (r->op_id);
  if (r->op == CBIR_JOURNAL_ENROL)
    copy->code = g_memdup2 (r->code, (gsize) j->dim * sizeof (float));
  g_ptr_array_add (j->records, copy);
  return TRUE;
}

/* ---- JSON (records between machines) ---- */

static const char *const op_names[] = { NULL, "enrol", "remove", "relabel" };

char *
cbir_journal_record_to_json (const CbirJournalRecord *r, guint dim,
    const char *fingerprint, const char *origin)
{
  GString *s = g_string_sized_new (256 + dim * 12);

  g_string_append_printf (s, "{\"schema_version\":1,\"op\":\"%s\",\"id\":",
      op_names[r->op]);
  cbir_json_append_string (s, r->id);
  g_string_append_printf (s, ",\"label\":%d", r->label);
  if (r->op_id) {
    g_string_append (s, ",\"op_id\":");
    cbir_json_append_string (s, r->op_id);
  }
  g_string_append (s, ",\"model\":");
  cbir_json_append_string (s, fingerprint);
  if (origin) {
    g_string_append (s, ",\"origin\":");
    cbir_json_append_string (s, origin);
  }
  if (r->op == CBIR_JOURNAL_ENROL) {
    g_string_append (s, ",\"code\":[");
    for (guint i = 0; i < dim; i++) {
      if (i)
        g_string_append_c (s, ',');
      cbir_json_append_float (s, r->code[i]);
    }
    g_string_append_c (s, ']');
  }
  g_string_append_c (s, '}');
  return g_string_free (s, FALSE);
}

/* A member's string or integer; NULL / FALSE when it is missing or of
 * another type (json-glib's getters are critical on a wrong type). */
static const char *
member_string (JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member (o, name);

  return n && JSON_NODE_HOLDS_VALUE (n) &&
      json_node_get_value_type (n) == G_TYPE_STRING ?
      json_node_get_string (n) : NULL;
}

static gboolean
member_int (JsonObject *o, const char *name, gint64 *v)
{
  JsonNode *n = json_object_get_member (o, name);

  if (!n || !JSON_NODE_HOLDS_VALUE (n) ||
      json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  *v = json_node_get_int (n);
  return TRUE;
}

CbirJournalRecord *
cbir_journal_record_from_json (const char *text, gsize len, guint dim,
    const char *fingerprint, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (CbirJournalRecord) r = g_new0 (CbirJournalRecord, 1);
  JsonObject *o;
  JsonNode *root;
  const char *op, *model, *bad;
  gint64 version = 0, label = 0;

  if (!cbir_json_parse_strict (parser, text, (gssize) len, error))
    return NULL;
  root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root))
    goto invalid;
  o = json_node_get_object (root);
  if (!member_int (o, "schema_version", &version) || version != 1)
    goto invalid;
  op = member_string (o, "op");
  for (guint i = 1; i < G_N_ELEMENTS (op_names); i++)
    if (g_strcmp0 (op, op_names[i]) == 0)
      r->op = (CbirJournalOp) i;
  model = member_string (o, "model");
  if (model == NULL)
    goto invalid;
  if (g_strcmp0 (model, fingerprint) != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
        "an operation for a gallery of model %.64s (this one: %s)", model,
        fingerprint);
    return NULL;
  }
  r->id = g_strdup (member_string (o, "id"));
  r->op_id = g_strdup (member_string (o, "op_id"));
  if (json_object_has_member (o, "label") && (!member_int (o, "label",
              &label) || label < G_MININT32 || label > G_MAXINT32))
    goto invalid;
  r->label = (gint32) label;
  if (r->op == CBIR_JOURNAL_ENROL) {
    JsonArray *a = json_object_has_member (o, "code") &&
        JSON_NODE_HOLDS_ARRAY (json_object_get_member (o, "code")) ?
        json_object_get_array_member (o, "code") : NULL;

    if (!a || json_array_get_length (a) != dim)
      goto invalid;
    r->code = g_new (float, dim);
    for (guint i = 0; i < dim; i++) {
      JsonNode *n = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_VALUE (n) ||
          (json_node_get_value_type (n) != G_TYPE_DOUBLE &&
              json_node_get_value_type (n) != G_TYPE_INT64))
        goto invalid;
      r->code[i] = (float) json_node_get_double (n);
    }
  }
  if ((bad = check_record (r, dim))) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "not a valid enrolment operation: %s", bad);
    return NULL;
  }
  return g_steal_pointer (&r);

invalid:
  g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
      "not an enrolment operation of schema version 1 (op enrol, remove or "
      "relabel; id; label; model; code of %u floats for enrol)", dim);
  return NULL;
}

void
cbir_journal_record_free (CbirJournalRecord *r)
{
  if (r)
    record_free (r);
}
