/* PCA and ITQ baselines (see include/cbir/baselines.h). */
#include "cbir/baselines.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* LAPACK (OpenBLAS ships it; Debian has no lapack.h for it). gfortran ABI:
 * hidden string lengths at the end. */
extern void dsyevd_ (const char *jobz, const char *uplo, const int *n,
    double *a, const int *lda, double *w, double *work, const int *lwork,
    int *iwork, const int *liwork, int *info, size_t l_jobz, size_t l_uplo);
extern void dgesvd_ (const char *jobu, const char *jobvt, const int *m,
    const int *n, double *a, const int *lda, double *s, double *u,
    const int *ldu, double *vt, const int *ldvt, double *work,
    const int *lwork, int *info, size_t l_jobu, size_t l_jobvt);

struct _CbirPca
{
  guint d;
  guint k;
  float *mean;                  /* d */
  float *components;            /* d x k, row-major (column j = component j) */
  float *mean_proj;             /* k: mean . components */
  double *variances;            /* k */
};

void
cbir_pca_free (CbirPca *p)
{
  if (!p)
    return;
  g_free (p->mean);
  g_free (p->components);
  g_free (p->mean_proj);
  g_free (p->variances);
  g_free (p);
}

guint
cbir_pca_get_input_dim (const CbirPca *p)
{
  return p->d;
}

guint
cbir_pca_get_n_components (const CbirPca *p)
{
  return p->k;
}

const double *
cbir_pca_get_variances (const CbirPca *p)
{
  return p->variances;
}

const float *
cbir_pca_get_components (const CbirPca *p)
{
  return p->components;
}

#define PCA_BLOCK 2048

CbirPca *
cbir_pca_fit (const float *x, guint n, guint d, guint k, GError **error)
{
  if (n < 2 || d == 0 || k == 0 || k > d) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "PCA: cannot fit %u components to %u rows of %u values", k, n, d);
    return NULL;
  }
  if (d > 16384) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_UNSUPPORTED,
        "PCA: %u input dimensions is too many for a dense covariance", d);
    return NULL;
  }
  double *mean = g_new0 (double, d);
  for (guint i = 0; i < n; i++)
    for (guint j = 0; j < d; j++)
      mean[j] += x[(gsize) i * d + j];
  for (guint j = 0; j < d; j++)
    mean[j] /= n;

  /* covariance (upper triangle, column-major = row-major for symmetric) */
  double *cov = g_new0 (double, (gsize) d * d);
  double *blk = g_new (double, (gsize) PCA_BLOCK * d);
  for (guint i0 = 0; i0 < n; i0 += PCA_BLOCK) {
    guint rows = MIN (PCA_BLOCK, n - i0);
    for (guint i = 0; i < rows; i++)
      for (guint j = 0; j < d; j++)
        blk[(gsize) i * d + j] = x[(gsize) (i0 + i) * d + j] - mean[j];
    /* cov += blk^T blk; row-major blk is column-major blk^T (d x rows) */
    cblas_dsyrk (CblasColMajor, CblasUpper, CblasNoTrans, (int) d,
        (int) rows, 1.0, blk, (int) d, 1.0, cov, (int) d);
  }
  g_free (blk);
  for (gsize j = 0; j < (gsize) d * d; j++)
    cov[j] /= (n - 1);

  int nn = (int) d, lwork = -1, liwork = -1, info = 0, iwq = 0;
  double wq = 0;
  double *w = g_new (double, d);
  dsyevd_ ("V", "U", &nn, cov, &nn, w, &wq, &lwork, &iwq, &liwork, &info, 1,
      1);
  lwork = (int) wq;
  liwork = iwq;
  double *work = g_new (double, MAX (lwork, 1));
  int *iwork = g_new (int, MAX (liwork, 1));
  if (info == 0)
    dsyevd_ ("V", "U", &nn, cov, &nn, w, work, &lwork, iwork, &liwork, &info,
        1, 1);
  g_free (work);
  g_free (iwork);
  if (info != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "PCA: eigen-decomposition failed (dsyevd info %d)", info);
    g_free (w);
    g_free (cov);
    g_free (mean);
    return NULL;
  }

  CbirPca *p = g_new0 (CbirPca, 1);
  p->d = d;
  p->k = k;
  p->mean = g_new (float, d);
  for (guint j = 0; j < d; j++)
    p->mean[j] = (float) mean[j];
  p->components = g_new (float, (gsize) d * k);
  p->variances = g_new (double, k);
  /* eigenvalues ascending; eigenvector e is column e (column-major) */
  for (guint c = 0; c < k; c++) {
    guint e = d - 1 - c;
    const double *v = cov + (gsize) e * d;
    guint amax = 0;
    for (guint j = 1; j < d; j++)
      if (fabs (v[j]) > fabs (v[amax]))
        amax = j;
    double sign = v[amax] < 0 ? -1.0 : 1.0;
    for (guint j = 0; j < d; j++)
      p->components[(gsize) j * k + c] = (float) (sign * v[j]);
    p->variances[c] = MAX (w[e], 0.0);
  }
  p->mean_proj = g_new0 (float, k);
  for (guint c = 0; c < k; c++) {
    double acc = 0;
    for (guint j = 0; j < d; j++)
      acc += (double) p->mean[j] * p->components[(gsize) j * k + c];
    p->mean_proj[c] = (float) acc;
  }
  g_free (w);
  g_free (cov);
  g_free (mean);
  return p;
}

void
cbir_pca_transform (const CbirPca *p, const float *x, guint n, float *out)
{
  if (n == 0)
    return;
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) n,
      (int) p->k, (int) p->d, 1.f, x, (int) p->d, p->components, (int) p->k,
      0.f, out, (int) p->k);
  for (guint i = 0; i < n; i++)
    for (guint c = 0; c < p->k; c++)
      out[(gsize) i * p->k + c] -= p->mean_proj[c];
}

/* ---- ITQ ---- */

struct _CbirItq
{
  CbirPca *pca;
  guint bits;
  float *rotation;              /* bits x bits, row-major: z = v R */
};

void
cbir_itq_free (CbirItq *q)
{
  if (!q)
    return;
  cbir_pca_free (q->pca);
  g_free (q->rotation);
  g_free (q);
}

guint
cbir_itq_get_bits (const CbirItq *q)
{
  return q->bits;
}

/* SVD of a c x c column-major matrix a (destroyed): a = U S VT. */
static gboolean
svd_square (int c, double *a, double *u, double *vt, GError **error)
{
  double *s = g_new (double, c);
  int lwork = -1, info = 0;
  double wq = 0;
  dgesvd_ ("A", "A", &c, &c, a, &c, s, u, &c, vt, &c, &wq, &lwork, &info, 1,
      1);
  lwork = (int) wq;
  double *work = g_new (double, MAX (lwork, 1));
  if (info == 0)
    dgesvd_ ("A", "A", &c, &c, a, &c, s, u, &c, vt, &c, work, &lwork, &info,
        1, 1);
  g_free (work);
  g_free (s);
  if (info != 0) {
    g_set_error (error, CBIR_ERROR, CBIR_ERROR_INVALID_ARGUMENT,
        "ITQ: SVD failed (dgesvd info %d)", info);
    return FALSE;
  }
  return TRUE;
}

static double
gauss (GRand *r)
{
  double u1 = g_rand_double (r), u2 = g_rand_double (r);
  if (u1 < 1e-300)
    u1 = 1e-300;
  return sqrt (-2.0 * log (u1)) * cos (2 * G_PI * u2);
}

CbirItq *
cbir_itq_fit (const float *x, guint n, guint d, guint bits,
    guint iterations, guint64 seed, GError **error)
{
  g_autoptr (CbirPca) pca = cbir_pca_fit (x, n, d, bits, error);
  if (!pca)
    return NULL;
  int c = (int) bits;
  float *v = g_new (float, (gsize) n * c);
  cbir_pca_transform (pca, x, n, v);

  double *a = g_new (double, (gsize) c * c);
  double *u = g_new (double, (gsize) c * c);
  double *vt = g_new (double, (gsize) c * c);
  float *rot = g_new (float, (gsize) c * c);
  float *z = g_new (float, (gsize) n * c);
  float *cm = g_new (float, (gsize) c * c);
  gboolean ok = TRUE;

  /* random orthogonal start: U of the SVD of a Gaussian matrix */
  GRand *r = g_rand_new_with_seed_array ((const guint32 *) &seed, 2);
  for (int i = 0; i < c * c; i++)
    a[i] = gauss (r);
  g_rand_free (r);
  ok = svd_square (c, a, u, vt, error);
  for (int i = 0; ok && i < c; i++)
    for (int j = 0; j < c; j++)
      rot[i * c + j] = (float) u[i + j * c];

  for (guint it = 0; ok && it < iterations; it++) {
    /* Z = V R; B = sign (Z) in {-1, +1} (Z >= 0 -> +1) */
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) n, c, c,
        1.f, v, c, rot, c, 0.f, z, c);
    for (gsize i = 0; i < (gsize) n * c; i++)
      z[i] = z[i] >= 0.f ? 1.f : -1.f;
    /* C = B^T V (c x c, row-major) */
    cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, c, c, (int) n,
        1.f, z, c, v, c, 0.f, cm, c);
    /* column-major copy; C = UB S UA^T; R = UA UB^T */
    for (int i = 0; i < c; i++)
      for (int j = 0; j < c; j++)
        a[i + j * c] = cm[i * c + j];
    ok = svd_square (c, a, u, vt, error);
    for (int i = 0; ok && i < c; i++)
      for (int j = 0; j < c; j++) {
        double acc = 0;
        for (int l = 0; l < c; l++)
          acc += vt[l + i * c] * u[j + l * c];
        rot[i * c + j] = (float) acc;
      }
  }
  g_free (a);
  g_free (u);
  g_free (vt);
  g_free (z);
  g_free (cm);
  g_free (v);
  if (!ok) {
    g_free (rot);
    return NULL;
  }
  CbirItq *q = g_new0 (CbirItq, 1);
  q->pca = g_steal_pointer (&pca);
  q->bits = bits;
  q->rotation = rot;
  return q;
}

void
cbir_itq_project (const CbirItq *q, const float *x, guint n, float *out)
{
  if (n == 0)
    return;
  int c = (int) q->bits;
  float *v = g_new (float, (gsize) n * c);
  cbir_pca_transform (q->pca, x, n, v);
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) n, c, c, 1.f,
      v, c, q->rotation, c, 0.f, out, c);
  g_free (v);
}
