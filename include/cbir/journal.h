/* A gallery's enrolment journal: what was enrolled, removed or relabelled
 * while it was in use, kept durably beside the gallery file
 * (GALLERY.journal) and replayed when the gallery is opened.
 *
 * File: a header (magic "CBIRJNL1", version 1, the code dimension, the
 * model fingerprint, the gallery's item count and the CRC-32 of its labels
 * and codes, CRC-32 of those) and records, each
 *   u32 payload length, u32 CRC-32 of the payload, payload:
 *   u8 op (1 enrol, 2 remove, 3 relabel), u8 operation id length (0:
 *   none), 2 zero bytes, i32 label, u32 id length, the id (UTF-8,
 *   1..1024 bytes, no NUL), the operation id (UTF-8, no NUL), and for an
 *   enrolment its code: dim little-endian floats (finite).
 * All integers little-endian. An append writes one record with one write
 * and fdatasync()s it before it returns TRUE: an acknowledged record
 * survives a crash or a power cut. A record cut short at the end of the
 * file (a crash during the write) is not acknowledged: opening drops it
 * (truncating the file when it may write). Anything else wrong (a bad
 * header, a record whose CRC fails with more data after it, a bad op) is
 * an error naming the file and the byte offset: a journal is never
 * silently half-read. A journal belongs to one gallery: opened with
 * another (one rebuilt since, where "#INDEX" would name other items) it is
 * refused. Appends from several processes are serialised with flock (). */
#pragma once

#include <cbir/common.h>
#include <cbir/gallery.h>

G_BEGIN_DECLS

typedef enum {
  CBIR_JOURNAL_ENROL = 1,       /* a new item: id, label, code */
  CBIR_JOURNAL_REMOVE = 2,      /* the item id is gone */
  CBIR_JOURNAL_RELABEL = 3,     /* the item id has a new label */
} CbirJournalOp;

#define CBIR_JOURNAL_MAX_ID 1024
#define CBIR_JOURNAL_MAX_OP_ID 255

typedef struct {
  CbirJournalOp op;
  gint32 label;                 /* enrol, relabel */
  char *id;                     /* the item */
  float *code;                  /* enrol: dim floats, else NULL */
  char *op_id;                  /* this operation's own id (e.g. a UUID,
                                 * when it travels between machines), or
                                 * NULL */
} CbirJournalRecord;

typedef struct _CbirJournal CbirJournal;

/* The gallery a journal belongs to. */
typedef struct {
  const char *fingerprint;      /* its model's (64 hex digits) */
  guint dim;                    /* floats a code */
  guint32 items;                /* its items */
  guint32 crc;                  /* CRC-32 of its labels and codes */
} CbirJournalGallery;

/* What identifies g (float codes: dim > 0). */
void cbir_journal_gallery_init (CbirJournalGallery *owner,
    const CbirGallery *g);

/* Opens path (creating it with its header when missing and `create`; an
 * empty file gets its header too), checks it belongs to `owner`, and
 * reads every record. NULL with an error naming the file otherwise (and
 * when missing without `create`: CBIR_ERROR_IO, ENOENT). */
CbirJournal *cbir_journal_open (const char *path,
    const CbirJournalGallery *owner, gboolean create, GError **error);
void cbir_journal_free (CbirJournal *j);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirJournal, cbir_journal_free)

const char *cbir_journal_get_path (const CbirJournal *j);
guint cbir_journal_get_dim (const CbirJournal *j);
/* Records read at open and appended since, in order. */
guint cbir_journal_n_records (const CbirJournal *j);
const CbirJournalRecord *cbir_journal_get (const CbirJournal *j, guint i);
/* Bytes of a torn record dropped at open (0 normally). */
guint64 cbir_journal_dropped_bytes (const CbirJournal *j);

/* Appends one record durably (copied; id and code checked); TRUE once it
 * is on disk. On failure the file is left as it was. */
gboolean cbir_journal_append (CbirJournal *j, const CbirJournalRecord *r,
    GError **error);

/* A record as JSON, one line, for other machines:
 *   {"schema_version":1,"op":"enrol"|"remove"|"relabel","id":..,
 *    "label":..,"op_id":..,"model":FINGERPRINT,"origin":..,"code":[..]}
 * (op_id and origin when set; code for an enrolment, each float written
 * so that it reads back the same). */
char *cbir_journal_record_to_json (const CbirJournalRecord *r, guint dim,
    const char *fingerprint, const char *origin);
/* Parses it; NULL with an error when it is not one, is for another model
 * (CBIR_ERROR_MISMATCH) or would not pass cbir_journal_append's checks. */
CbirJournalRecord *cbir_journal_record_from_json (const char *text,
    gsize len, guint dim, const char *fingerprint, GError **error);
void cbir_journal_record_free (CbirJournalRecord *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CbirJournalRecord, cbir_journal_record_free)

G_END_DECLS
