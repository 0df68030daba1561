/* IDX data sets (MNIST, Fashion-MNIST, EMNIST...), raw or gzip.
 *
 * File layout (big-endian): magic 0x00 0x00 <type> <rank>, then <rank>
 * 32-bit dimensions, then the product of the dimensions elements of <type>.
 * We read and write unsigned bytes (type 0x08) only.
 *
 * Reading never trusts the header: the size it promises is checked for
 * overflow and against a limit, then against the file's length (raw files,
 * before anything is allocated) or against what the gzip stream actually
 * holds (gzip files, read in chunks, never past the promised size plus one
 * byte, so a small gzip bomb cannot make us allocate or inflate more than the
 * header promises). */
#include "cbir/idx.h"

#include "atomic-file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <zlib.h>

#define IDX_TYPE_UBYTE 0x08
#define IDX_MAX_RANK 8
/* The data sets this engine is for are far below this; a bigger header is
 * treated as corrupt rather than trusted with a huge allocation, and it
 * keeps every count and byte offset within 32 bits for the callers. */
#define IDX_MAX_DATA_BYTES ((guint64) G_MAXUINT32)
#define IDX_CHUNK (1u << 20)

static const char *
idx_type_name (guint8 t)
{
  switch (t) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0B:
      return "short";
    case 0x0C:
      return "int";
    case 0x0D:
      return "float";
    case 0x0E:
      return "double";
    default:
      return NULL;
  }
}

/* An open IDX file: raw or gzip, read through zlib (which reads raw files
 * transparently). */
typedef struct {
  const char *path;
  gzFile gz;
  gboolean is_gzip;
  guint64 file_size;
  guint64 consumed;             /* decompressed bytes read so far */
} IdxReader;

static void
idx_reader_close (IdxReader *r)
{
  if (r->gz)
    gzclose (r->gz);
  r->gz = NULL;
}

static gboolean
idx_reader_open (IdxReader *r, const char *path, GError **error)
{
  guint8 magic[2];
  struct stat st;
  ssize_t got;
  int fd;

  memset (r, 0, sizeof (*r));
  r->path = path;

  fd = g_open (path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: cannot open: %s",
        path, g_strerror (e));
    return FALSE;
  }
  if (fstat (fd, &st) != 0) {
    int e = errno;
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: cannot stat: %s",
        path, g_strerror (e));
    close (fd);
    return FALSE;
  }
  if (!S_ISREG (st.st_mode)) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: %s", path,
        S_ISDIR (st.st_mode) ? "is a directory, not an IDX file" :
        "not a regular file");
    close (fd);
    return FALSE;
  }
  r->file_size = (guint64) st.st_size;

  /* gzip is detected by its magic, not by the file name */
  got = pread (fd, magic, 2, 0);
  r->is_gzip = (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b);

  r->gz = gzdopen (fd, "rb");
  if (r->gz == NULL) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO,
        "%s: cannot open: out of memory", path);
    close (fd);
    return FALSE;
  }
  gzbuffer (r->gz, 128 * 1024);
  return TRUE;
}

/* Reads up to len bytes; returns the number read (short only at the end of
 * the data) or -1 with error set (gzip stream corrupt or cut short). */
static gint64
idx_reader_read (IdxReader *r, void *buf, guint64 len, GError **error)
{
  guint64 total = 0;

  while (total < len) {
    unsigned chunk = (unsigned) MIN (len - total, (guint64) IDX_CHUNK);
    int n = gzread (r->gz, (guint8 *) buf + total, chunk);
    if (n < 0 || (n == 0 && r->is_gzip)) {
      int zerr = Z_OK;
      const char *msg = gzerror (r->gz, &zerr);
      const char *colon = msg ? strstr (msg, ">: ") : NULL;
      if (colon)                /* zlib prefixes "<fd:N>: " */
        msg = colon + 3;
      if (n == 0 && zerr == Z_OK)
        break;                  /* clean end of the gzip stream */
      if (zerr == Z_ERRNO)
        g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: read error: %s",
            r->path, g_strerror (errno));
      else if (zerr == Z_BUF_ERROR)
        g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
            "%s: truncated gzip stream (ends after %" G_GUINT64_FORMAT
            " decompressed bytes)", r->path, r->consumed + total);
      else
        g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
            "%s: corrupt gzip data: %s", r->path, msg ? msg : "unknown error");
      return -1;
    }
    if (n == 0)
      break;
    total += (guint64) n;
  }
  r->consumed += total;
  return (gint64) total;
}

static gboolean
idx_set_errno_error (const char *path, const char *what, GError **error)
{
  int e = errno;
  g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO, "%s: %s: %s", path, what,
      g_strerror (e));
  return FALSE;
}

static char *
idx_dims_to_string (guint rank, const guint32 *dims)
{
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < rank; i++)
    g_string_append_printf (s, "%s%u", i ? "x" : "", dims[i]);
  return g_string_free (s, FALSE);
}

/* What the header's data describes, for messages: "10000 images of 28x28". */
static char *
idx_describe (guint rank, const guint32 *dims)
{
  if (rank == 3)
    return g_strdup_printf ("%u images of %ux%u", dims[0], dims[1], dims[2]);
  if (rank == 1)
    return g_strdup_printf ("%u labels", dims[0]);
  {
    g_autofree char *d = idx_dims_to_string (rank, dims);
    return g_strdup_printf ("an array of %s", d);
  }
}

/* Reads a whole unsigned-byte IDX file of the given rank. On success, dims
 * holds the rank dimensions and *out_data the product of them bytes. */
static gboolean
idx_read_u8 (const char *path, guint want_rank, const char *kind,
    guint32 *dims, guint8 **out_data, guint64 *out_size, GError **error)
{
  IdxReader r;
  guint8 head[4];
  guint8 dimbuf[4 * IDX_MAX_RANK];
  guint64 size = 1, header_size;
  gint64 got;
  const char *tname;
  g_autofree char *what = NULL;
  g_autofree guint8 *data = NULL;
  guint8 extra;

  *out_data = NULL;
  if (!idx_reader_open (&r, path, error))
    return FALSE;

  got = idx_reader_read (&r, head, 4, error);
  if (got < 0)
    goto fail;
  if (got < 4) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: truncated: %" G_GINT64_FORMAT " bytes%s, too short for an IDX "
        "header", path, got, r.is_gzip ? " after decompression" : "");
    goto fail;
  }
  if (head[0] != 0 || head[1] != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: not an IDX file: bad magic %02x %02x %02x %02x (expected "
        "00 00 08 %02x)", path, head[0], head[1], head[2], head[3], want_rank);
    goto fail;
  }
  tname = idx_type_name (head[2]);
  if (tname == NULL) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: not an IDX file: unknown data type 0x%02x in the magic", path,
        head[2]);
    goto fail;
  }
  if (head[2] != IDX_TYPE_UBYTE) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
        "%s: data type 0x%02x (%s) not supported, only unsigned byte (0x08)",
        path, head[2], tname);
    goto fail;
  }
  if (head[3] != want_rank) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: rank %u, expected %u for %s (%s)", path, head[3], want_rank,
        kind, want_rank == 3 ? "count x rows x cols" : "count");
    goto fail;
  }

  got = idx_reader_read (&r, dimbuf, 4 * want_rank, error);
  if (got < 0)
    goto fail;
  if (got < 4 * (gint64) want_rank) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: truncated: header needs %u bytes but the file%s holds %"
        G_GINT64_FORMAT, path, 4 + 4 * want_rank,
        r.is_gzip ? " (decompressed)" : "", 4 + got);
    goto fail;
  }
  header_size = 4 + 4 * (guint64) want_rank;
  for (guint i = 0; i < want_rank; i++)
    dims[i] = ((guint32) dimbuf[4 * i] << 24) | ((guint32) dimbuf[4 * i + 1]
        << 16) | ((guint32) dimbuf[4 * i + 2] << 8) | dimbuf[4 * i + 3];
  for (guint i = 0; i < want_rank; i++) {
    if (dims[i] == 0) {
      g_autofree char *d = idx_dims_to_string (want_rank, dims);
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: dimension %u is zero (%s): no %s", path, i, d, kind);
      goto fail;
    }
  }
  for (guint i = 0; i < want_rank; i++) {
    if (!g_uint64_checked_mul (&size, size, dims[i])) {
      g_autofree char *d = idx_dims_to_string (want_rank, dims);
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: dimensions %s overflow 64 bits", path, d);
      goto fail;
    }
  }
  what = idx_describe (want_rank, dims);
  if (size > IDX_MAX_DATA_BYTES) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: header says %s (%" G_GUINT64_FORMAT " bytes), over the %"
        G_GUINT64_FORMAT "-byte limit for an IDX file (corrupt header?)",
        path, what, size, IDX_MAX_DATA_BYTES);
    goto fail;
  }

  if (!r.is_gzip) {
    /* raw: check the length before allocating anything */
    guint64 have = r.file_size - header_size;
    if (have < size) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: truncated: header says %s (%" G_GUINT64_FORMAT " bytes) but "
          "only %" G_GUINT64_FORMAT " follow", path, what, size, have);
      goto fail;
    }
    if (have > size) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: %" G_GUINT64_FORMAT " bytes of trailing data after %s (%"
          G_GUINT64_FORMAT " bytes)", path, have - size, what, size);
      goto fail;
    }
    data = g_try_malloc (size);
    if (data == NULL) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO,
          "%s: out of memory for %" G_GUINT64_FORMAT " bytes", path, size);
      goto fail;
    }
    got = idx_reader_read (&r, data, size, error);
    if (got < 0)
      goto fail;
    if ((guint64) got != size) {
      /* the file shrank under us */
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: truncated: header says %s (%" G_GUINT64_FORMAT " bytes) but "
          "only %" G_GINT64_FORMAT " could be read", path, what, size, got);
      goto fail;
    }
  } else {
    /* gzip: the header's promise is only a promise. Grow the buffer as the
     * data really arrives, so a tiny file claiming gigabytes costs nothing. */
    guint64 have = 0, alloc = MIN (size, (guint64) 4 * IDX_CHUNK);
    data = g_try_malloc (alloc);
    if (data == NULL) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO,
          "%s: out of memory", path);
      goto fail;
    }
    while (have < size) {
      guint64 want;
      if (have == alloc) {
        guint8 *bigger;
        alloc = MIN (size, alloc * 2);
        bigger = g_try_realloc (data, alloc);
        if (bigger == NULL) {
          g_set_error (error, CBIR_ERROR, CBIR_ERROR_IO,
              "%s: out of memory for %" G_GUINT64_FORMAT " bytes", path,
              alloc);
          goto fail;
        }
        data = bigger;
      }
      want = alloc - have;
      got = idx_reader_read (&r, data + have, want, error);
      if (got < 0)
        goto fail;
      have += (guint64) got;
      if ((guint64) got < want)
        break;
    }
    if (have < size) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
          "%s: truncated: header says %s (%" G_GUINT64_FORMAT " bytes) but "
          "only %" G_GUINT64_FORMAT " follow after decompression", path,
          what, size, have);
      goto fail;
    }
  }

  /* Exactly at the end? One more byte tells (and, for gzip, makes zlib
   * check the stream's CRC and length trailer). */
  got = idx_reader_read (&r, &extra, 1, error);
  if (got < 0)
    goto fail;
  if (got > 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_FORMAT,
        "%s: trailing data after %s (%" G_GUINT64_FORMAT " bytes)%s", path,
        what, size, r.is_gzip ? " in the decompressed stream" : "");
    goto fail;
  }

  idx_reader_close (&r);
  *out_data = g_steal_pointer (&data);
  if (out_size)
    *out_size = size;
  return TRUE;

fail:
  idx_reader_close (&r);
  return FALSE;
}

CbirDataset *
cbir_dataset_load (const char *images_path, const char *labels_path,
    GError **error)
{
  guint32 idims[3], ldims[1];
  guint8 *pixels = NULL, *lab = NULL;
  CbirDataset *ds;

  g_return_val_if_fail (images_path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!idx_read_u8 (images_path, 3, "images", idims, &pixels, NULL, error))
    return NULL;
  if (labels_path) {
    if (!idx_read_u8 (labels_path, 1, "labels", ldims, &lab, NULL, error)) {
      g_free (pixels);
      return NULL;
    }
    if (ldims[0] != idims[0]) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_MISMATCH,
          "%s: %u labels but %s holds %u images", labels_path, ldims[0],
          images_path, idims[0]);
      g_free (pixels);
      g_free (lab);
      return NULL;
    }
  }

  ds = g_new0 (CbirDataset, 1);
  ds->n = idims[0];
  ds->rows = idims[1];
  ds->cols = idims[2];
  ds->images = pixels;
  if (lab) {
    ds->labels = g_new (gint32, ds->n);
    for (guint i = 0; i < ds->n; i++)
      ds->labels[i] = lab[i];
    g_free (lab);
  }
  return ds;
}

void
cbir_dataset_free (CbirDataset *ds)
{
  if (ds == NULL)
    return;
  g_free (ds->images);
  g_free (ds->labels);
  g_free (ds);
}

CbirDataset *
cbir_dataset_subset (const CbirDataset *ds, const guint *indices, guint n)
{
  CbirDataset *out;
  gsize isize;

  g_return_val_if_fail (ds != NULL, NULL);
  g_return_val_if_fail (indices != NULL || n == 0, NULL);
  for (guint i = 0; i < n; i++)
    g_return_val_if_fail (indices[i] < ds->n, NULL);

  isize = (gsize) ds->rows * ds->cols;
  out = g_new0 (CbirDataset, 1);
  out->n = n;
  out->rows = ds->rows;
  out->cols = ds->cols;
  out->images = g_malloc ((gsize) n * isize);
  for (guint i = 0; i < n; i++)
    memcpy (out->images + (gsize) i * isize,
        ds->images + (gsize) indices[i] * isize, isize);
  if (ds->labels) {
    out->labels = g_new (gint32, MAX (n, 1));
    for (guint i = 0; i < n; i++)
      out->labels[i] = ds->labels[indices[i]];
  }
  return out;
}

/* Writes all of buf to fd. */
static gboolean
idx_write_all (int fd, const guint8 *buf, gsize len)
{
  while (len > 0) {
    ssize_t n = write (fd, buf, MIN (len, (gsize) 1 << 30));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return FALSE;
    }
    buf += n;
    len -= (gsize) n;
  }
  return TRUE;
}

static gboolean
idx_gz_write_all (gzFile gz, const guint8 *buf, gsize len)
{
  while (len > 0) {
    unsigned chunk = (unsigned) MIN (len, (gsize) IDX_CHUNK);
    if (gzwrite (gz, buf, chunk) != (int) chunk)
      return FALSE;
    buf += chunk;
    len -= chunk;
  }
  return TRUE;
}

gboolean
cbir_idx_write_u8 (const char *path, guint n_dims, const guint32 *dims,
    const guint8 *data, GError **error)
{
  guint8 header[4 + 4 * 255];
  gsize hlen, size = 1;
  CbirAtomicFile af;
  gboolean gzip, ok;
  int fd;

  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (n_dims < 1 || n_dims > 255 || dims == NULL) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: cannot write an IDX file of rank %u", path, n_dims);
    return FALSE;
  }
  for (guint i = 0; i < n_dims; i++) {
    if (!g_size_checked_mul (&size, size, dims[i])) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
          "%s: IDX dimensions overflow", path);
      return FALSE;
    }
  }
  if (size > 0 && data == NULL) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "%s: no data to write", path);
    return FALSE;
  }

  header[0] = 0;
  header[1] = 0;
  header[2] = IDX_TYPE_UBYTE;
  header[3] = (guint8) n_dims;
  for (guint i = 0; i < n_dims; i++) {
    header[4 + 4 * i] = (guint8) (dims[i] >> 24);
    header[5 + 4 * i] = (guint8) (dims[i] >> 16);
    header[6 + 4 * i] = (guint8) (dims[i] >> 8);
    header[7 + 4 * i] = (guint8) dims[i];
  }
  hlen = 4 + 4 * (gsize) n_dims;
  gzip = g_str_has_suffix (path, ".gz");

  /* temp file in the same directory, so the rename is atomic */
  if (!cbir_atomic_file_open (&af, path, 0644, NULL))
    return idx_set_errno_error (path, "cannot create temporary file", error);
  fd = af.fd;

  if (gzip) {
    int gfd = dup (fd);
    gzFile gz = gfd >= 0 ? gzdopen (gfd, "wb6") : NULL;
    if (gz == NULL) {
      if (gfd >= 0)
        close (gfd);
      ok = FALSE;
    } else {
      ok = idx_gz_write_all (gz, header, hlen)
          && idx_gz_write_all (gz, data, size);
      if (gzclose (gz) != Z_OK)
        ok = FALSE;
    }
  } else {
    ok = idx_write_all (fd, header, hlen) && idx_write_all (fd, data, size);
  }
  if (!ok) {
    cbir_atomic_file_abort (&af);
    return idx_set_errno_error (path, "write failed", error);
  }
  return cbir_atomic_file_commit (&af, error);
}

gboolean
cbir_dataset_save (const CbirDataset *ds, const char *images_path,
    const char *labels_path, GError **error)
{
  guint32 idims[3];
  g_autofree guint8 *lab = NULL;

  g_return_val_if_fail (ds != NULL, FALSE);
  g_return_val_if_fail (images_path != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (labels_path) {
    if (ds->labels == NULL) {
      g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
          "%s: the data set has no labels to write", labels_path);
      return FALSE;
    }
    lab = g_malloc (MAX (ds->n, 1));
    for (guint i = 0; i < ds->n; i++) {
      if (ds->labels[i] < 0 || ds->labels[i] > 255) {
        g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
            "%s: label %d of image %u does not fit an unsigned byte",
            labels_path, ds->labels[i], i);
        return FALSE;
      }
      lab[i] = (guint8) ds->labels[i];
    }
  }

  idims[0] = ds->n;
  idims[1] = ds->rows;
  idims[2] = ds->cols;
  if (!cbir_idx_write_u8 (images_path, 3, idims, ds->images, error))
    return FALSE;
  if (labels_path) {
    guint32 ldims[1] = { ds->n };
    if (!cbir_idx_write_u8 (labels_path, 1, ldims, lab, error))
      return FALSE;
  }
  return TRUE;
}
