/* gst-cbir: cbirsearch, k-NN search of each frame's embedding in a gallery.
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * SECTION:element-cbirsearch
 * @title: cbirsearch
 *
 * Reads the GstCbirEmbeddingMeta that cbirencode put on each buffer (its
 * pads take any caps: what it needs is that meta, so it goes anywhere
 * after cbirencode, across videoconvert, videoscale, queue or tee),
 * searches the k nearest items of a gallery file (made by cbirindex or
 * cbir-encode) and attaches the result: a GstCbirResultMeta (C
 * applications, include/gst/cbir/cbirmeta.h) and a GstCustomMeta named
 * "GstCbirResultStructureMeta" whose GstStructure "cbir-result" bindings
 * can read. With #GstCbirSearch:post-messages (default) the same structure
 * is posted on the bus as an element message:
 *
 * - "schema-version" (gint, 1), "utc" (string: the frame's wall-clock time,
 *   ISO 8601 UTC, from a GstReferenceTimestampMeta when upstream set one,
 *   else the system clock)
 * - "timestamp", "stream-time", "running-time", "duration" (guint64, ns)
 * - "frame" (guint64): stream time x caps frame rate; without a rate the
 *   buffer offset, else a frame counter
 * - "frame-width", "frame-height" (guint); "stream-id" and "source"
 *   (upstream's URI) when known; "element" (this element's name),
 *   "model" (fingerprint), "gallery" (file base name), "gallery-size"
 * - "ids" (GstValueArray of guint): gallery indices, nearest first
 * - "labels" (GstValueArray of gint): their labels; "label-names"
 *   (GstValueArray of strings) when the gallery names its labels; and
 *   "item-ids" (GstValueArray of strings: an enrolled item's id, else the
 *   item's source id or "#INDEX") once items were enrolled
 * - "distances" (GstValueArray of gfloat): their distances
 * - "label" (gint): the vote of the plain nearest items (not the hits after
 *   diffusion; see #GstCbirSearch:vote), -1 = no match
 * - "confidence" (gdouble): the winner's share of the 1/distance weight
 *   of the k first-ranked candidates, 0..1 (0 when no match)
 * - "match-score" (gdouble): how like the gallery the query is, 0..1 (see
 *   "Open set" below)
 * - "match" (gboolean): FALSE when no hit is within max-distance or the
 *   match score is below min-match-score
 * - "metric" (string); "rerank" (string): "none", "query-expansion" or
 *   "diffusion", the re-ranking that ordered the hits; and when known "label-name" (string),
 *   "source-index" (guint64) and "source-label" (gint) from cbiridxsrc
 *
 * These are the result schema's fields (version 1): cbirpublish writes
 * them as JSON with '-' written '_' (schema/cbir-result-1.schema.json).
 *
 * Several digits in a frame (cbirencode regions=digits): the buffer then
 * carries one embedding per GstVideoRegionOfInterestMeta of type "digit".
 * Each is searched; its result structure (the fields above, without the
 * region fields below) is added to its ROI as a param named "cbir-result"
 * (gst_video_region_of_interest_meta_get_param (roi, "cbir-result")), and
 * one message is posted per region, with these fields added:
 *
 * - "region-id" (gint): the ROI's id (whole-frame messages have no region
 *   fields)
 * - "x", "y", "width", "height" (guint): the ROI's box in frame pixels
 * - "n-regions" (guint): the number of regions searched in this frame
 *
 * The whole-frame GstCbirResultMeta and custom meta are added only for a
 * whole-frame embedding; frames with regions carry their results on the
 * ROIs (and in a GstCbirRegionResultsMeta, which restores the ROIs' params
 * that GStreamer 1.22's videoconvert and videoscale drop).
 *
 * Re-ranking (#GstCbirSearch:rerank): by default (auto) a gallery that
 * carries a k-NN graph (cbirindex builds one unless graph=false) is
 * searched by diffusion over that graph (see include/cbir/diffusion.h):
 * the query is linked to its 10 nearest gallery items and the items are
 * ranked by how much of that diffuses to them over the gallery's own
 * neighbourhood structure, which finds whole classes far better than the
 * plain distance (MNIST-10k full-list mAP 0.64 -> 0.91). The first hit
 * stays the plain nearest item; "distances" stay each hit's plain distance
 * to the query (so after diffusion they are not sorted), and max-distance
 * drops hits by them. The label is still read from the plain nearest
 * items (not the diffused hits: a label is best read from the nearest
 * items, see search_one), so label and confidence do not depend on it.
 *
 * Vote (#GstCbirSearch:vote, #GstCbirSearch:local-scaling): the plain
 * nearest items are the candidates (50, or 10k), ranked after local
 * scaling (each item's distance less half its mean distance to its own 10
 * nearest gallery items, include/cbir/openset.h); by default every label
 * is judged by the mean of its k first-ranked candidates (a label of fewer
 * than k items by all of them) and the nearest mean wins
 * (cbir_vote_local_mean); vote=weighted lets the k first-ranked vote by
 * 1/distance.
 * The message's "rerank" field says which re-ranking made the order
 * ("none", "query-expansion" or "diffusion").
 *
 * With #GstCbirSearch:query-expansion = K (float metrics), each query is
 * first searched for its K nearest items, replaced by the alpha-weighted
 * sum of itself and them (alpha 3: weights max (cos, 0)^3; see
 * cbir_searcher_set_query_expansion) and searched again; the distances
 * are then those of the expanded query. A gallery augmented at index time
 * (cbirindex dba=K, cbir-eval --dba) is searched as it is; the read-only
 * #GstCbirSearch:dba tells its K once the element has started.
 *
 * Open set: the vote names a label for anything, a frame of colour bars
 * or noise included, and its share says nothing about that. The match
 * score does: every gallery item's distance to its nearest other item is
 * measured when the element starts (about one search of the whole gallery
 * with itself), and a query's score is the share of gallery items whose
 * nearest other item is at least as far as the query's nearest item (its
 * plain nearest, before any re-ranking). 0.5 is as near as the median
 * item; for queries drawn like the gallery items the score is about
 * uniform on 0..1, so #GstCbirSearch:min-match-score = t rejects a share
 * t of such queries: below it the result is "no match" (label -1,
 * confidence 0, match FALSE; the hits are still given). 0 turns the
 * decision off (the score is still reported). A gallery may also hold
 * examples of what is not a match (letters and shapes in a digit gallery:
 * cbirindex label=-2); a query whose vote they win is no match too, which
 * rejects look-alikes the distance alone cannot (see the README's open-set
 * figures). The default min-match-score, -1, picks t by the gallery when
 * the element starts (cbir_match_score_default_min): 0.01 for a gallery
 * of matches only, 0.0025 for one with examples of non-matches, which
 * then reject nearly all that a larger t would while each rejection by t
 * is a real digit lost; #GstCbirSearch:current-min-match-score tells the
 * t in use.
 *
 * Enrolment: the gallery grows while the pipeline runs. The action signal
 * "enrol" (id, label, region id) adds the last searched frame's code (or
 * one of its regions') with a label; "remove" (id) and "relabel" (id,
 * label) change any item (an enrolled id, "#INDEX" or a gallery item's
 * source id). The same from a custom event "cbir-enrol" (fields "op":
 * enrol, remove or relabel; "id", "label", "region-id"), downstream from
 * upstream (applied to the frame before it) or upstream from the
 * application (gst_element_send_event on the pipeline). Each is written
 * durably to the gallery's journal (#GstCbirSearch:journal, default
 * GALLERY.journal) before it is acknowledged, is visible to the next
 * frame, and is replayed whenever the gallery is opened again; an element
 * message "cbir-enrolment" (op, id, label, ok, enrolled, error) reports
 * it. Enrolled items are searched exactly beside the gallery's structures
 * (its k-NN graph is left as built): one nearer than the gallery's
 * nearest item comes first (see include/cbir/enrolment.h); the hit
 * indices of enrolled items start at the gallery's size. Float galleries
 * only.
 *
 * Hits farther than #GstCbirSearch:max-distance are dropped; when none is
 * left the result is "no match" (label -1). A buffer without an embedding
 * (no cbirencode upstream, or a camera frame in which cbirencode
 * preprocess=mnist found no digit) passes through unsearched, posting no
 * message (one warning saying which of the two it looks like). A code
 * holding NaN or infinity matches nothing (counted in
 * #GstCbirSearch:invalid-codes, one warning). A gallery made by another
 * model than the frames' is an error naming both fingerprints, found when the element starts
 * (it asks upstream which model encodes: cbirencode answers) or, when
 * nothing upstream answers, at the first frame.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 -m cbiridxsrc images=t10k-images-idx3-ubyte.gz count=20 ! \
 *     cbirencode model=model.safetensors ! \
 *     cbirsearch gallery=gallery.safetensors k=5 ! fakesink
 * ]|
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstcbirsearch.h"
#include "gstcbirutils.h"
#include "gstcbirmeta.h"
#include "gstcbirresult.h"
#include "gstcbirshared.h"
#include "gstcbirsync.h"

#include <gst/video/video.h>
#include <cbir/enrolment.h>
#include <cbir/openset.h>
#include <cbir/search.h>
#include <math.h>
#include <string.h>

GST_DEBUG_CATEGORY_STATIC (gst_cbir_search_debug);
#define GST_CAT_DEFAULT gst_cbir_search_debug

#define GST_CBIR_METRIC_AUTO (-1)
#define GST_TYPE_CBIR_SEARCH_METRIC (gst_cbir_search_metric_get_type ())
static GType
gst_cbir_search_metric_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_CBIR_METRIC_AUTO, "The gallery's metric (hamming for bit codes, "
          "else the metric recorded in the file)", "auto"},
    {CBIR_METRIC_L2, "Squared Euclidean distance on float codes", "l2"},
    {CBIR_METRIC_COSINE, "1 - cosine similarity on float codes", "cosine"},
    {CBIR_METRIC_HAMMING, "Hamming distance on packed bits", "hamming"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstCbirSearchMetric", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

#define DEFAULT_GALLERY NULL
#define DEFAULT_K 5
#define DEFAULT_METRIC GST_CBIR_METRIC_AUTO
#define DEFAULT_SHORTLIST 0
#define DEFAULT_MAX_DISTANCE G_MAXFLOAT
#define DEFAULT_MIN_MATCH_SCORE (-1.0f)     /* auto: by the gallery */
#define DEFAULT_POST_MESSAGES TRUE
#define DEFAULT_QUERY_EXPANSION 0
#define DEFAULT_LOCAL_SCALING TRUE
#define DEFAULT_RERANK_QE 20
#define MAX_K 1024

typedef enum
{
  GST_CBIR_RERANK_AUTO,
  GST_CBIR_RERANK_NONE,
  GST_CBIR_RERANK_QUERY_EXPANSION,
  GST_CBIR_RERANK_DIFFUSION,
} GstCbirRerank;
#define DEFAULT_RERANK GST_CBIR_RERANK_AUTO

#define GST_TYPE_CBIR_RERANK (gst_cbir_rerank_get_type ())
static GType
gst_cbir_rerank_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_CBIR_RERANK_AUTO, "query-expansion when query-expansion > 0, else "
          "diffusion when the gallery has a k-NN graph (float metrics), else "
          "none", "auto"},
    {GST_CBIR_RERANK_NONE, "The plain k-NN order", "none"},
    {GST_CBIR_RERANK_QUERY_EXPANSION, "Alpha query expansion with "
          "query-expansion neighbours (20 when it is 0)", "query-expansion"},
    {GST_CBIR_RERANK_DIFFUSION, "Diffusion over the gallery's k-NN graph "
          "(an error when the gallery has none)", "diffusion"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstCbirRerank", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

typedef enum
{
  GST_CBIR_VOTE_WEIGHTED,
  GST_CBIR_VOTE_LOCAL_MEAN,
} GstCbirVote;
#define DEFAULT_VOTE GST_CBIR_VOTE_LOCAL_MEAN

#define GST_TYPE_CBIR_VOTE (gst_cbir_vote_get_type ())
static GType
gst_cbir_vote_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    {GST_CBIR_VOTE_WEIGHTED, "The k first-ranked candidates vote, each "
          "weighing 1/distance", "weighted"},
    {GST_CBIR_VOTE_LOCAL_MEAN, "Each label's k first-ranked candidates are "
          "averaged, the nearest mean wins", "local-mean"},
    {0, NULL, NULL},
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstCbirVote", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

static const gchar *
rerank_nick (GstCbirRerank r)
{
  switch (r) {
    case GST_CBIR_RERANK_QUERY_EXPANSION:
      return "query-expansion";
    case GST_CBIR_RERANK_DIFFUSION:
      return "diffusion";
    default:
      return "none";
  }
}

enum
{
  PROP_0,
  PROP_GALLERY,
  PROP_K,
  PROP_METRIC,
  PROP_SHORTLIST,
  PROP_MAX_DISTANCE,
  PROP_POST_MESSAGES,
  PROP_QUERY_EXPANSION,
  PROP_DBA,
  PROP_RERANK,
  PROP_GRAPH_K,
  PROP_INVALID_CODES,
  PROP_MIN_MATCH_SCORE,
  PROP_CURRENT_MIN_MATCH_SCORE,
  PROP_JOURNAL,
  PROP_ENROLLED,
  PROP_SHARED_BY,
  PROP_SYNC_ADDRESS,
  PROP_SYNC_TOPIC,
  PROP_SYNC_CLIENT_ID,
  PROP_LOCAL_SCALING,
  PROP_VOTE,
};

enum
{
  SIGNAL_ENROL,
  SIGNAL_REMOVE,
  SIGNAL_RELABEL,
  LAST_SIGNAL
};
static guint signals[LAST_SIGNAL];

/* The codes of the last frame searched, for enrolment: one per region
 * (region_id -1: the whole frame). */
typedef struct
{
  gint region_id;
  guint dim;
  gfloat *code;
} LastCode;

struct _GstCbirSearch
{
  GstBaseTransform parent;

  /* properties (object lock) */
  gchar *gallery_path;
  guint k;
  gint metric;
  guint shortlist;
  gfloat max_distance;
  gfloat min_match_score;       /* -1: auto_min_match_score */
  gfloat auto_min_match_score;  /* the open gallery's default, -1 before */
  gboolean post_messages;
  gint local_scaling;           /* gboolean; also read unlocked (atomic) */
  gint vote;                    /* GstCbirVote; also read unlocked (atomic) */
  guint query_expansion;
  guint cur_dba;                /* the open gallery's DBA k (read-only) */
  GstCbirRerank rerank;
  guint cur_graph_k;            /* the open gallery's graph k (read-only) */
  GstCbirRerank cur_rerank;     /* the re-ranking in use */
  guint cur_shortlist;          /* the searcher's shortlist */
  guint64 invalid_codes;        /* queries with NaN or infinity (read-only) */
  gchar *journal_path;          /* NULL: GALLERY.journal */
  gchar *sync_address, *sync_topic, *sync_client_id;

  /* streaming state */
  GstCbirSharedGallery *shared; /* the process's copy of the gallery */
  CbirGallery *gallery;         /* the shared one's, like scorer, enrolments */
  CbirSearcher *searcher;
  CbirMatchScorer *scorer;
  CbirEnrolments *enrolments;   /* float galleries; NULL otherwise */
  GstCbirSync *sync;            /* enrolments shared over MQTT, or NULL */
  gchar *origin;                /* sync: this element's client id */
  GMutex last_lock;             /* last_codes, last_frame */
  GArray *last_codes;           /* of LastCode */
  guint64 last_frame;
  CbirHit *merged;              /* merge output, hits_len long */
  CbirHit *plain;               /* after diffusion, with local scaling or
                                 * local-mean, the plain k-NN hits that
                                 * vote; hits_len long */
  gfloat *keys;                 /* their ranking keys; hits_len long */
  guint *sizes;                 /* their labels' sizes; hits_len long */
  GHashTable *label_sizes;      /* label -> items, without enrolments */
  CbirMetric cur_metric;
  guint query_dim;
  const gchar *checked_fingerprint;     /* interned, once checked */
  gboolean warned_no_embedding;
  guint64 frame;
  CbirHit *hits;
  guint hits_len;
  GstCbirStreamInfo stream;     /* for the frame fields (streaming) */
  gchar *element_name;          /* at start */
  gchar *gallery_name;          /* the gallery file's base name */
};

static void
clear_last_codes (GstCbirSearch * self)
{
  guint i;

  for (i = 0; i < self->last_codes->len; i++)
    g_free (g_array_index (self->last_codes, LastCode, i).code);
  g_array_set_size (self->last_codes, 0);
}

/* Frees the searcher and lets go of the shared gallery (with its scorer
 * and enrolments). */
static void
release_gallery (GstCbirSearch * self)
{
  GstCbirSharedGallery *shared;

  g_clear_pointer (&self->searcher, cbir_searcher_free);
  /* (the read-only properties read these with the object lock) */
  GST_OBJECT_LOCK (self);
  shared = self->shared;
  self->shared = NULL;
  self->scorer = NULL;
  self->enrolments = NULL;
  self->gallery = NULL;
  GST_OBJECT_UNLOCK (self);
  g_clear_pointer (&self->label_sizes, g_hash_table_unref);
  gst_cbir_shared_gallery_unref (shared);
}

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);

#define gst_cbir_search_parent_class parent_class
G_DEFINE_TYPE_WITH_CODE (GstCbirSearch, gst_cbir_search,
    GST_TYPE_BASE_TRANSFORM, GST_DEBUG_CATEGORY_INIT (gst_cbir_search_debug,
        "cbirsearch", 0, "cbir gallery search"));
GST_ELEMENT_REGISTER_DEFINE (cbirsearch, "cbirsearch", GST_RANK_NONE,
    GST_TYPE_CBIR_SEARCH);

static void gst_cbir_search_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec);
static void gst_cbir_search_get_property (GObject * object, guint prop_id,
    GValue * value, GParamSpec * pspec);
static void gst_cbir_search_finalize (GObject * object);
static gboolean gst_cbir_search_start (GstBaseTransform * trans);
static gboolean check_upstream_model (GstCbirSearch * self);
static gboolean gst_cbir_search_stop (GstBaseTransform * trans);
static gboolean gst_cbir_search_sink_event (GstBaseTransform * trans,
    GstEvent * event);
static gboolean gst_cbir_search_src_event (GstBaseTransform * trans,
    GstEvent * event);
static gboolean gst_cbir_search_enrol (GstCbirSearch * self, const gchar * id,
    gint label, gint region_id);
static gboolean start_sync (GstCbirSearch * self, const gchar * path);
static void stop_sync (GstCbirSync * sync);
static gboolean gst_cbir_search_remove (GstCbirSearch * self,
    const gchar * id);
static gboolean gst_cbir_search_relabel (GstCbirSearch * self,
    const gchar * id, gint label);
static gboolean gst_cbir_search_set_caps (GstBaseTransform * trans,
    GstCaps * incaps, GstCaps * outcaps);
static GstFlowReturn gst_cbir_search_transform_ip (GstBaseTransform * trans,
    GstBuffer * buf);

static void
gst_cbir_search_class_init (GstCbirSearchClass * klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);

  gobject_class->set_property = gst_cbir_search_set_property;
  gobject_class->get_property = gst_cbir_search_get_property;
  gobject_class->finalize = gst_cbir_search_finalize;

  g_object_class_install_property (gobject_class, PROP_GALLERY,
      g_param_spec_string ("gallery", "Gallery",
          "Gallery file (safetensors, from cbirindex or cbir-encode); "
          "opened when the element starts", DEFAULT_GALLERY,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_K,
      g_param_spec_uint ("k", "k", "Number of nearest gallery items to "
          "return, and of each label's candidates the vote weighs (see "
          "vote and local-scaling; not the hits after diffusion)",
          1, MAX_K, DEFAULT_K, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_METRIC,
      g_param_spec_enum ("metric", "Metric",
          "Distance used to compare codes", GST_TYPE_CBIR_SEARCH_METRIC,
          DEFAULT_METRIC, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_SHORTLIST,
      g_param_spec_uint ("shortlist", "Shortlist",
          "Two-stage search: Hamming shortlist of this many items re-ranked "
          "with the exact metric (needs a gallery with bit codes); 0 = exact "
          "search", 0, G_MAXINT, DEFAULT_SHORTLIST, G_PARAM_READWRITE |
          G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_MAX_DISTANCE,
      g_param_spec_float ("max-distance", "Maximum distance",
          "Hits farther than this are dropped; with none left the result is "
          "\"no match\" (label -1)", 0.0f, G_MAXFLOAT, DEFAULT_MAX_DISTANCE,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_POST_MESSAGES,
      g_param_spec_boolean ("post-messages", "Post messages",
          "Post a \"cbir-result\" element message on the bus for every frame",
          DEFAULT_POST_MESSAGES, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_QUERY_EXPANSION,
      g_param_spec_uint ("query-expansion", "Query expansion",
          "Alpha query expansion: search each query, replace it by the "
          "weighted sum (max(cos,0)^3) of itself and its first N hits, search "
          "again (float metrics l2/cosine only); 0 = off", 0, MAX_K,
          DEFAULT_QUERY_EXPANSION, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS
          | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_LOCAL_SCALING,
      g_param_spec_boolean ("local-scaling", "Local scaling of the vote",
          "The vote's candidates (the 50 plain nearest, 10k when k > 5; "
          "with vote=weighted 30, 2k when k > 15) are ranked after local "
          "scaling (hubness reduction, CSLS): each item's distance less "
          "half its mean distance to its own 10 nearest gallery items, so "
          "that a dense cluster of gallery items must be nearer to win; "
          "false: by plain distance (query expansion's hits vote as they "
          "are either way)",
          DEFAULT_LOCAL_SCALING, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_VOTE,
      g_param_spec_enum ("vote", "Vote",
          "How the candidates (the plain nearest, see local-scaling) name "
          "the label: local-mean, the label whose k first-ranked candidates "
          "are nearest on average (a label of fewer than k items by all of "
          "them; a candidate at distance 0, the query itself, gives its "
          "label); meant with local-scaling, without it dense labels win "
          "(see the README); weighted, the k first-ranked candidates each "
          "weighing 1/distance. confidence is the label's 1/distance weight "
          "share among the k first-ranked either way", GST_TYPE_CBIR_VOTE,
          DEFAULT_VOTE,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_DBA,
      g_param_spec_uint ("dba", "Gallery DBA",
          "Database-side augmentation of the open gallery: its neighbour "
          "count k, 0 = none or not started (read-only)", 0, G_MAXINT, 0,
          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (gobject_class, PROP_RERANK,
      g_param_spec_enum ("rerank", "Re-ranking",
          "How the hits are re-ranked: auto = diffusion over the gallery's "
          "k-NN graph when it has one (cbirindex graph=true, the default), "
          "query expansion when query-expansion > 0", GST_TYPE_CBIR_RERANK,
          DEFAULT_RERANK, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_GRAPH_K,
      g_param_spec_uint ("graph-k", "Gallery graph k",
          "Neighbours per item of the open gallery's k-NN graph, 0 = no "
          "graph or not started (read-only)", 0, G_MAXINT, 0,
          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (gobject_class, PROP_INVALID_CODES,
      g_param_spec_uint64 ("invalid-codes", "Invalid codes",
          "Queries (frames or regions) since start whose code held NaN or "
          "infinite values (a broken model): they match nothing, label -1 "
          "(read-only)", 0, G_MAXUINT64, 0,
          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (gobject_class, PROP_MIN_MATCH_SCORE,
      g_param_spec_float ("min-match-score", "Minimum match score",
          "Below this match score (the share of gallery items whose own "
          "nearest other item is at least as far as the query's nearest "
          "item) the result is \"no match\", label -1: about this share "
          "of queries drawn like the gallery is rejected; 0 = off; -1 = "
          "auto: 0.0025 when the gallery holds examples of non-matches "
          "(label -2, which then do most of the rejecting), else 0.01",
          -1.0f, 1.0f, DEFAULT_MIN_MATCH_SCORE, G_PARAM_READWRITE |
          G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class,
      PROP_CURRENT_MIN_MATCH_SCORE,
      g_param_spec_float ("current-min-match-score",
          "Current minimum match score",
          "The match-score threshold in use: min-match-score, or when that "
          "is -1 the open gallery's automatic one (-1 before the element "
          "has started; read-only)", -1.0f, 1.0f, -1.0f,
          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  g_object_class_install_property (gobject_class, PROP_JOURNAL,
      g_param_spec_string ("journal", "Journal",
          "The gallery's enrolment journal (enrolments, removals and "
          "relabellings since it was built; replayed at start, written "
          "durably by the enrol, remove and relabel signals and "
          "\"cbir-enrol\" events); NULL: GALLERY.journal beside the gallery",
          NULL, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_ENROLLED,
      g_param_spec_uint ("enrolled", "Enrolled", "Items enrolled in the "
          "gallery since it was built (from its journal; 0 before start)",
          0, G_MAXUINT, 0, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (gobject_class, PROP_SYNC_ADDRESS,
      g_param_spec_string ("sync-address", "Sync address",
          "MQTT broker (host[:port]) through which this gallery's "
          "enrolments, removals and relabellings are shared with other "
          "pipelines (every operation made here is published, every one "
          "published there applied here, once); NULL: not shared", NULL,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_SYNC_TOPIC,
      g_param_spec_string ("sync-topic", "Sync topic",
          "The topic of the shared enrolments (NULL: "
          "cbir/enrolments/GALLERY-FILE-NAME)", NULL, G_PARAM_READWRITE |
          G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_SYNC_CLIENT_ID,
      g_param_spec_string ("sync-client-id", "Sync client id",
          "This pipeline's MQTT client id, which must stay the same across "
          "restarts and differ between pipelines: the broker keeps what it "
          "missed under it (NULL: gst-cbir-HOST-ELEMENT-NAME)", NULL,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_SHARED_BY,
      g_param_spec_uint ("shared-by", "Shared by", "How many cbirsearch "
          "elements of this process share this element's copy of the "
          "gallery (same file, same journal: one copy in memory, one "
          "match-score reference, enrolments seen by all); 0 before start",
          0, G_MAXUINT, 0, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));

  /**
   * GstCbirSearch::enrol:
   * @search: the element
   * @id: the new item's id (NULL or "": STREAM-ID/frame-N/region-R)
   * @label: its label
   * @region_id: which code of the last frame searched: -1 the whole
   *   frame's (or its only region's), else a region id
   *
   * Adds the last searched frame's code to the gallery, durably (its
   * journal), visible to the next frame. An id already enrolled is left as
   * it is. Returns: TRUE when enrolled (FALSE: see the warning posted).
   */
  signals[SIGNAL_ENROL] = g_signal_new_class_handler ("enrol",
      G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION,
      G_CALLBACK (gst_cbir_search_enrol), NULL, NULL, NULL, G_TYPE_BOOLEAN,
      3, G_TYPE_STRING, G_TYPE_INT, G_TYPE_INT);
  /**
   * GstCbirSearch::remove:
   * @search: the element
   * @id: an enrolled id, "#INDEX" or a gallery item's source id
   *
   * Removes an item from the gallery, durably. Returns: TRUE when removed.
   */
  signals[SIGNAL_REMOVE] = g_signal_new_class_handler ("remove",
      G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION,
      G_CALLBACK (gst_cbir_search_remove), NULL, NULL, NULL, G_TYPE_BOOLEAN,
      1, G_TYPE_STRING);
  /**
   * GstCbirSearch::relabel:
   * @search: the element
   * @id: an enrolled id, "#INDEX" or a gallery item's source id
   * @label: the new label
   *
   * Gives an item another label, durably. Returns: TRUE when done.
   */
  signals[SIGNAL_RELABEL] = g_signal_new_class_handler ("relabel",
      G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION,
      G_CALLBACK (gst_cbir_search_relabel), NULL, NULL, NULL, G_TYPE_BOOLEAN,
      2, G_TYPE_STRING, G_TYPE_INT);

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class, "CBIR search",
      "Filter/Analyzer/Video",
      "Searches each frame's embedding in a gallery (k-NN) and attaches "
      "and posts the result", "gst-cbir developers");

  trans_class->start = GST_DEBUG_FUNCPTR (gst_cbir_search_start);
  trans_class->stop = GST_DEBUG_FUNCPTR (gst_cbir_search_stop);
  trans_class->transform_ip = GST_DEBUG_FUNCPTR (gst_cbir_search_transform_ip);
  trans_class->sink_event = GST_DEBUG_FUNCPTR (gst_cbir_search_sink_event);
  trans_class->src_event = GST_DEBUG_FUNCPTR (gst_cbir_search_src_event);
  trans_class->set_caps = GST_DEBUG_FUNCPTR (gst_cbir_search_set_caps);
  trans_class->passthrough_on_same_caps = FALSE;

  gst_type_mark_as_plugin_api (GST_TYPE_CBIR_SEARCH_METRIC, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_CBIR_RERANK, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_CBIR_VOTE, 0);
}

static void
gst_cbir_search_init (GstCbirSearch * self)
{
  self->gallery_path = g_strdup (DEFAULT_GALLERY);
  self->k = DEFAULT_K;
  self->metric = DEFAULT_METRIC;
  self->shortlist = DEFAULT_SHORTLIST;
  self->max_distance = DEFAULT_MAX_DISTANCE;
  self->min_match_score = DEFAULT_MIN_MATCH_SCORE;
  self->auto_min_match_score = -1.0f;
  self->post_messages = DEFAULT_POST_MESSAGES;
  self->query_expansion = DEFAULT_QUERY_EXPANSION;
  self->local_scaling = DEFAULT_LOCAL_SCALING;
  self->vote = DEFAULT_VOTE;
  self->rerank = DEFAULT_RERANK;
  gst_cbir_stream_info_init (&self->stream);
  g_mutex_init (&self->last_lock);
  self->last_codes = g_array_new (FALSE, FALSE, sizeof (LastCode));

  /* attaching metas needs a writable buffer: never passthrough */
  gst_base_transform_set_in_place (GST_BASE_TRANSFORM (self), TRUE);
  gst_base_transform_set_passthrough (GST_BASE_TRANSFORM (self), FALSE);
}

static void
gst_cbir_search_finalize (GObject * object)
{
  GstCbirSearch *self = GST_CBIR_SEARCH (object);

  g_free (self->gallery_path);
  release_gallery (self);
  g_free (self->hits);
  g_free (self->merged);
  g_free (self->plain);
  g_free (self->keys);
  g_free (self->sizes);
  clear_last_codes (self);
  g_array_unref (self->last_codes);
  g_mutex_clear (&self->last_lock);
  g_free (self->journal_path);
  g_free (self->sync_address);
  g_free (self->sync_topic);
  g_free (self->sync_client_id);
  g_free (self->origin);
  gst_cbir_stream_info_clear (&self->stream);
  g_free (self->element_name);
  g_free (self->gallery_name);

  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_cbir_search_set_property (GObject * object, guint prop_id,
    const GValue * value, GParamSpec * pspec)
{
  GstCbirSearch *self = GST_CBIR_SEARCH (object);

  GST_OBJECT_LOCK (self);
  if (gst_cbir_refuse_if_running_unlocked (GST_ELEMENT (self), pspec))
    return;
  switch (prop_id) {
    case PROP_GALLERY:
      g_free (self->gallery_path);
      self->gallery_path = g_value_dup_string (value);
      break;
    case PROP_K:
      self->k = g_value_get_uint (value);
      break;
    case PROP_METRIC:
      self->metric = g_value_get_enum (value);
      break;
    case PROP_SHORTLIST:
      self->shortlist = g_value_get_uint (value);
      break;
    case PROP_MAX_DISTANCE:
      self->max_distance = g_value_get_float (value);
      break;
    case PROP_MIN_MATCH_SCORE:
      self->min_match_score = g_value_get_float (value);
      break;
    case PROP_POST_MESSAGES:
      self->post_messages = g_value_get_boolean (value);
      break;
    case PROP_QUERY_EXPANSION:
      self->query_expansion = g_value_get_uint (value);
      break;
    case PROP_LOCAL_SCALING:
      g_atomic_int_set (&self->local_scaling, g_value_get_boolean (value));
      break;
    case PROP_VOTE:
      g_atomic_int_set (&self->vote, g_value_get_enum (value));
      break;
    case PROP_RERANK:
      self->rerank = g_value_get_enum (value);
      break;
    case PROP_JOURNAL:
      g_free (self->journal_path);
      self->journal_path = g_value_dup_string (value);
      break;
    case PROP_SYNC_ADDRESS:
      g_free (self->sync_address);
      self->sync_address = g_value_dup_string (value);
      break;
    case PROP_SYNC_TOPIC:
      g_free (self->sync_topic);
      self->sync_topic = g_value_dup_string (value);
      break;
    case PROP_SYNC_CLIENT_ID:
      g_free (self->sync_client_id);
      self->sync_client_id = g_value_dup_string (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

/* The threshold that decides: min-match-score, or when it is -1 the
 * open gallery's automatic one (object lock held). */
static gfloat
min_match_score_in_use (GstCbirSearch * self)
{
  return self->min_match_score >= 0 ? self->min_match_score :
      self->auto_min_match_score;
}

static void
gst_cbir_search_get_property (GObject * object, guint prop_id, GValue * value,
    GParamSpec * pspec)
{
  GstCbirSearch *self = GST_CBIR_SEARCH (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_GALLERY:
      g_value_set_string (value, self->gallery_path);
      break;
    case PROP_K:
      g_value_set_uint (value, self->k);
      break;
    case PROP_METRIC:
      g_value_set_enum (value, self->metric);
      break;
    case PROP_SHORTLIST:
      g_value_set_uint (value, self->shortlist);
      break;
    case PROP_MAX_DISTANCE:
      g_value_set_float (value, self->max_distance);
      break;
    case PROP_MIN_MATCH_SCORE:
      g_value_set_float (value, self->min_match_score);
      break;
    case PROP_CURRENT_MIN_MATCH_SCORE:
      g_value_set_float (value, min_match_score_in_use (self));
      break;
    case PROP_POST_MESSAGES:
      g_value_set_boolean (value, self->post_messages);
      break;
    case PROP_QUERY_EXPANSION:
      g_value_set_uint (value, self->query_expansion);
      break;
    case PROP_LOCAL_SCALING:
      g_value_set_boolean (value, g_atomic_int_get (&self->local_scaling));
      break;
    case PROP_VOTE:
      g_value_set_enum (value, g_atomic_int_get (&self->vote));
      break;
    case PROP_DBA:
      g_value_set_uint (value, self->cur_dba);
      break;
    case PROP_RERANK:
      g_value_set_enum (value, self->rerank);
      break;
    case PROP_GRAPH_K:
      g_value_set_uint (value, self->cur_graph_k);
      break;
    case PROP_INVALID_CODES:
      g_value_set_uint64 (value, self->invalid_codes);
      break;
    case PROP_JOURNAL:
      g_value_set_string (value, self->journal_path);
      break;
    case PROP_SYNC_ADDRESS:
      g_value_set_string (value, self->sync_address);
      break;
    case PROP_SYNC_TOPIC:
      g_value_set_string (value, self->sync_topic);
      break;
    case PROP_SYNC_CLIENT_ID:
      g_value_set_string (value, self->sync_client_id);
      break;
    case PROP_ENROLLED:
      g_value_set_uint (value, self->enrolments ?
          cbir_enrolments_n_enrolled (self->enrolments) : 0);
      break;
    case PROP_SHARED_BY:
      g_value_set_uint (value, self->shared ?
          gst_cbir_shared_gallery_users (self->shared) : 0);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static gboolean
gst_cbir_search_start (GstBaseTransform * trans)
{
  GstCbirSearch *self = GST_CBIR_SEARCH (trans);
  g_autofree gchar *path = NULL, *journal = NULL;
  g_autoptr (GError) err = NULL;
  gint metric;
  guint shortlist, qe;
  GstCbirRerank rerank;
  const CbirGraph *graph;
  gint64 t0;
  gfloat auto_min;

  GST_OBJECT_LOCK (self);
  path = g_strdup (self->gallery_path);
  metric = self->metric;
  shortlist = self->shortlist;
  self->cur_shortlist = shortlist;
  qe = self->query_expansion;
  rerank = self->rerank;
  journal = g_strdup (self->journal_path);
  GST_OBJECT_UNLOCK (self);

  if (path == NULL || *path == '\0')
    goto no_gallery;

  {
    GstCbirSharedGallery *shared = gst_cbir_shared_gallery_get (path,
        journal, &err);

    if (shared == NULL)
      goto open_failed;
    GST_OBJECT_LOCK (self);
    self->shared = shared;
    GST_OBJECT_UNLOCK (self);
  }
  self->gallery = gst_cbir_shared_gallery_gallery (self->shared);

  if (metric == GST_CBIR_METRIC_AUTO) {
    CbirMetric m = CBIR_METRIC_L2;

    if (cbir_gallery_get_code_type (self->gallery) == CBIR_CODE_BITS)
      m = CBIR_METRIC_HAMMING;
    else if (!cbir_metric_from_string (cbir_gallery_get_metric_name
            (self->gallery), &m))
      m = CBIR_METRIC_L2;
    self->cur_metric = m;
  } else {
    self->cur_metric = metric;
  }

  graph = cbir_gallery_get_graph (self->gallery);
  if (rerank == GST_CBIR_RERANK_AUTO) {
    if (qe > 0)
      rerank = GST_CBIR_RERANK_QUERY_EXPANSION;
    else if (graph && self->cur_metric != CBIR_METRIC_HAMMING)
      rerank = GST_CBIR_RERANK_DIFFUSION;
    else
      rerank = GST_CBIR_RERANK_NONE;
  }
  if (rerank == GST_CBIR_RERANK_QUERY_EXPANSION && qe == 0)
    qe = DEFAULT_RERANK_QE;
  if (rerank != GST_CBIR_RERANK_QUERY_EXPANSION && qe > 0)
    goto qe_conflict;
  if (rerank == GST_CBIR_RERANK_DIFFUSION && graph == NULL)
    goto no_graph;

  self->searcher = cbir_searcher_new (self->gallery, self->cur_metric,
      shortlist, &err);
  if (self->searcher == NULL)
    goto searcher_failed;
  if (!cbir_searcher_set_query_expansion (self->searcher, qe,
          CBIR_QE_DEFAULT_ALPHA, &err))
    goto qe_failed;
  if (rerank == GST_CBIR_RERANK_DIFFUSION) {
    CbirDiffusionParams dp;

    /* the low-rank form when the indexer stored it (graph-rank) */
    cbir_diffusion_params_init (&dp);
    dp.low_rank = cbir_graph_get_rank (graph) > 0;
    if (!cbir_searcher_set_diffusion (self->searcher, graph, &dp, &err))
      goto diffusion_failed;
  }
  self->cur_rerank = rerank;
  GST_OBJECT_LOCK (self);
  self->cur_dba = cbir_gallery_get_dba (self->gallery, NULL);
  self->cur_graph_k = graph ? cbir_graph_get_k (graph) : 0;
  self->invalid_codes = 0;
  GST_OBJECT_UNLOCK (self);

  self->query_dim = cbir_gallery_get_dim (self->gallery);
  if (self->query_dim == 0)
    self->query_dim = cbir_gallery_get_code_bits (self->gallery);
  self->checked_fingerprint = NULL;
  if (!check_upstream_model (self)) {
    release_gallery (self);
    return FALSE;
  }
  /* the gallery's own nearest-neighbour distances, for the match score
   * (after the model check: a wrong gallery fails at once) */
  t0 = g_get_monotonic_time ();
  self->scorer = gst_cbir_shared_gallery_scorer (self->shared,
      self->cur_metric, &err);
  if (self->scorer == NULL)
    goto scorer_failed;
  t0 = g_get_monotonic_time () - t0;
  /* min-match-score -1: the threshold for what this gallery holds */
  auto_min = cbir_match_score_default_min (self->gallery);
  GST_OBJECT_LOCK (self);
  self->auto_min_match_score = auto_min;
  GST_OBJECT_UNLOCK (self);
  /* what was enrolled since the gallery was built (float galleries; read
   * with the gallery) */
  GST_OBJECT_LOCK (self);
  self->enrolments = gst_cbir_shared_gallery_enrolments (self->shared);
  GST_OBJECT_UNLOCK (self);
  /* the local-mean vote's label sizes: kept by the enrolments, else here */
  if (self->enrolments == NULL)
    self->label_sizes = cbir_gallery_count_labels (self->gallery);
  if (!start_sync (self, path))
    goto sync_failed;
  self->warned_no_embedding = FALSE;
  self->frame = 0;
  g_free (self->element_name);
  self->element_name = gst_object_get_name (GST_OBJECT (self));
  g_free (self->gallery_name);
  self->gallery_name = g_path_get_basename (path);
  GST_INFO_OBJECT (self, "gallery %s: %u items, dim %u, metric %s, "
      "shortlist %u, re-ranking %s (query expansion %u), gallery dba %u, "
      "graph k %u; match-score reference in %.3f s, automatic threshold %g",
      path, cbir_gallery_size (self->gallery), self->query_dim,
      cbir_metric_to_string (self->cur_metric), shortlist,
      rerank_nick (rerank), qe, self->cur_dba, self->cur_graph_k, t0 / 1e6,
      auto_min);
  return TRUE;

  /* ERRORS */
no_gallery:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
        ("No gallery file specified (property \"gallery\")."), (NULL));
    return FALSE;
  }
open_failed:
  {
    if (!g_file_test (path, G_FILE_TEST_EXISTS))
      GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
          ("Gallery file \"%s\" not found.", path), ("%s", err->message));
    else
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
          ("Could not open gallery \"%s\": %s", path, err->message),
          ("%s", err->message));
    return FALSE;
  }
searcher_failed:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("Cannot search gallery \"%s\" with metric %s: %s", path,
            cbir_metric_to_string (self->cur_metric), err->message),
        ("%s", err->message));
    release_gallery (self);
    return FALSE;
  }
qe_conflict:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("query-expansion=%u is a re-ranking: it cannot go with rerank=%s",
            qe, rerank_nick (rerank)), (NULL));
    release_gallery (self);
    return FALSE;
  }
no_graph:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("rerank=diffusion needs a gallery with a k-NN graph; \"%s\" has "
            "none (build it with cbirindex graph=true)", path), (NULL));
    release_gallery (self);
    return FALSE;
  }
diffusion_failed:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("Cannot diffuse over gallery \"%s\" with metric %s: %s", path,
            cbir_metric_to_string (self->cur_metric), err->message),
        ("%s", err->message));
    release_gallery (self);
    return FALSE;
  }
sync_failed:
  {
    release_gallery (self);
    return FALSE;
  }
scorer_failed:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("Cannot score matches in gallery \"%s\": %s", path, err->message),
        ("%s", err->message));
    release_gallery (self);
    return FALSE;
  }
qe_failed:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("Cannot use query-expansion=%u with metric %s on gallery \"%s\": "
            "%s", qe, cbir_metric_to_string (self->cur_metric), path,
            err->message), ("%s", err->message));
    release_gallery (self);
    return FALSE;
  }
}

static gboolean
gst_cbir_search_stop (GstBaseTransform * trans)
{
  GstCbirSearch *self = GST_CBIR_SEARCH (trans);

  g_clear_pointer (&self->sync, stop_sync);
  release_gallery (self);
  g_mutex_lock (&self->last_lock);
  clear_last_codes (self);
  g_mutex_unlock (&self->last_lock);
  gst_cbir_stream_info_clear (&self->stream);
  GST_OBJECT_LOCK (self);
  self->cur_dba = 0;
  self->cur_graph_k = 0;
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

static GValue *
array_append (GValue * array, GType type)
{
  GValue v = G_VALUE_INIT;

  g_value_init (&v, type);
  gst_value_array_append_and_take_value (array, &v);
  return (GValue *) gst_value_array_get_value (array,
      gst_value_array_get_size (array) - 1);
}

/* One query's answer. */
typedef struct
{
  guint n;                      /* hits kept (within max-distance) */
  gint32 label;                 /* the vote, -1 = no match */
  gfloat confidence;            /* its share, 0 when no match */
  gfloat match_score;           /* how like the gallery, 0..1 */
  gboolean match;
} Answer;

static GstStructure *
make_result_structure (GstCbirSearch * self, GstBuffer * buf,
    const CbirHit * hits, const Answer * a)
{
  guint n = a->n;
  gint32 label = a->label;
  GstBaseTransform *trans = GST_BASE_TRANSFORM (self);
  GValue ids = G_VALUE_INIT, labels = G_VALUE_INIT, dists = G_VALUE_INIT,
      names = G_VALUE_INIT;
  GstCbirSourceMeta *src;
  GstStructure *s;
  const gchar *name;
  gboolean named = cbir_gallery_get_n_label_names (self->gallery) > 0;
  guint i;

  g_value_init (&ids, GST_TYPE_ARRAY);
  g_value_init (&labels, GST_TYPE_ARRAY);
  g_value_init (&dists, GST_TYPE_ARRAY);
  g_value_init (&names, GST_TYPE_ARRAY);
  for (i = 0; i < n; i++) {
    g_value_set_uint (array_append (&ids, G_TYPE_UINT), hits[i].index);
    g_value_set_int (array_append (&labels, G_TYPE_INT), hits[i].label);
    g_value_set_float (array_append (&dists, G_TYPE_FLOAT), hits[i].distance);
    if (named)
      g_value_set_string (array_append (&names, G_TYPE_STRING),
          cbir_gallery_get_label_name (self->gallery, hits[i].label));
  }

  s = gst_structure_new_empty (GST_CBIR_RESULT_STRUCTURE_NAME);
  gst_cbir_result_set_frame_fields (s, buf, &trans->segment, self->frame,
      &self->stream);
  gst_structure_set (s,
      "element", G_TYPE_STRING, self->element_name,
      "model", G_TYPE_STRING, cbir_gallery_get_model_fingerprint
      (self->gallery),
      "gallery", G_TYPE_STRING, self->gallery_name,
      "gallery-size", G_TYPE_UINT, cbir_gallery_size (self->gallery),
      "metric", G_TYPE_STRING, cbir_metric_to_string (self->cur_metric),
      "rerank", G_TYPE_STRING, rerank_nick (self->cur_rerank),
      "label", G_TYPE_INT, label,
      "confidence", G_TYPE_DOUBLE, (gdouble) a->confidence,
      "match-score", G_TYPE_DOUBLE, (gdouble) a->match_score,
      "match", G_TYPE_BOOLEAN, a->match, NULL);

  name = label >= 0 ? cbir_gallery_get_label_name (self->gallery, label) :
      NULL;
  if (name)
    gst_structure_set (s, "label-name", G_TYPE_STRING, name, NULL);
  gst_structure_take_value (s, "ids", &ids);
  gst_structure_take_value (s, "labels", &labels);
  if (named)
    gst_structure_take_value (s, "label-names", &names);
  else
    g_value_unset (&names);
  gst_structure_take_value (s, "distances", &dists);
  if (self->enrolments && cbir_enrolments_n_enrolled (self->enrolments) > 0) {
    /* which items: enrolled ones by the id they were enrolled with */
    GValue item_ids = G_VALUE_INIT;

    g_value_init (&item_ids, GST_TYPE_ARRAY);
    for (i = 0; i < n; i++)
      g_value_take_string (array_append (&item_ids, G_TYPE_STRING),
          cbir_enrolments_get_id (self->enrolments, hits[i].index));
    gst_structure_take_value (s, "item-ids", &item_ids);
  }
  src = (GstCbirSourceMeta *) gst_buffer_get_meta (buf,
      gst_cbir_source_meta_api_get_type ());
  if (src)
    gst_structure_set (s, "source-index", G_TYPE_UINT64, src->index,
        "source-label", G_TYPE_INT, src->label, NULL);
  return s;
}

/* ---- enrolment ---- */

/* Posts what an enrolment, removal or relabelling did: an element message
 * "cbir-enrolment" (op, id, label, ok, enrolled, and error when it
 * failed), and a warning when it failed. */
static void
post_enrolment (GstCbirSearch * self, const gchar * op, const gchar * id,
    gint label, const GError * err)
{
  GstStructure *s = gst_structure_new ("cbir-enrolment",
      "op", G_TYPE_STRING, op, "id", G_TYPE_STRING, id,
      "label", G_TYPE_INT, label, "ok", G_TYPE_BOOLEAN, err == NULL,
      "enrolled", G_TYPE_UINT, self->enrolments ?
      cbir_enrolments_n_enrolled (self->enrolments) : 0, NULL);

  if (err) {
    gst_structure_set (s, "error", G_TYPE_STRING, err->message, NULL);
    GST_ELEMENT_WARNING (self, RESOURCE, WRITE,
        ("Could not %s \"%s\": %s", op, id ? id : "", err->message), (NULL));
  }
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_element (GST_OBJECT (self), s));
}

/* The enrolments, or NULL with err set (not started, bit codes). */
static CbirEnrolments *
enrolments_or_error (GstCbirSearch * self, GError ** err)
{
  if (self->enrolments)
    return self->enrolments;
  g_set_error (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
      "%s", self->gallery ? "enrolment needs a gallery of float codes" :
      "the element has not started (no gallery open)");
  return NULL;
}

static const gchar *const op_nicks[] = { NULL, "enrol", "remove",
  "relabel"
};

/* One operation made here: written to the journal and applied (with an
 * operation id), published to the other pipelines when they share it, and
 * reported. Takes nothing; FALSE when it failed (the message says why). */
static gboolean
do_op (GstCbirSearch * self, CbirJournalOp op, const gchar * id, gint label,
    gfloat * code, GError * err)
{
  CbirEnrolments *e = err ? NULL : enrolments_or_error (self, &err);
  gboolean applied = FALSE;

  if (e) {
    g_autofree gchar *op_id = g_uuid_string_random ();
    CbirJournalRecord r = { op, label, (gchar *) id, code, op_id };

    if (cbir_enrolments_apply (e, &r, &applied, &err) && applied &&
        self->sync)
      gst_cbir_sync_publish (self->sync, cbir_journal_record_to_json (&r,
              cbir_gallery_get_dim (self->gallery),
              cbir_gallery_get_model_fingerprint (self->gallery),
              self->origin));
  }
  post_enrolment (self, op_nicks[op], id, label, err);
  if (err) {
    g_error_free (err);
    return FALSE;
  }
  return TRUE;
}

static gboolean
gst_cbir_search_enrol (GstCbirSearch * self, const gchar * id, gint label,
    gint region_id)
{
  g_autofree gchar *auto_id = NULL;
  g_autofree gfloat *code = NULL;
  GError *err = NULL;
  guint i;

  g_mutex_lock (&self->last_lock);
  for (i = 0; i < self->last_codes->len; i++) {
    LastCode *c = &g_array_index (self->last_codes, LastCode, i);

    if (c->region_id == region_id || (region_id < 0 &&
            self->last_codes->len == 1)) {
      code = g_memdup2 (c->code, c->dim * sizeof (gfloat));
      if (id == NULL || *id == '\0')
        id = auto_id = g_strdup_printf ("%s/frame-%" G_GUINT64_FORMAT
            "/region-%d", self->stream.stream_id ? self->stream.stream_id :
              "stream",
            self->last_frame, c->region_id);
      break;
    }
  }
  g_mutex_unlock (&self->last_lock);
  if (code == NULL && enrolments_or_error (self, &err))
    g_set_error (&err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
        "no code to enrol: %s", region_id < 0 ? "no frame searched yet, "
        "or the last one had several regions (give a region id)" :
        "the last frame searched has no such region");
  return do_op (self, CBIR_JOURNAL_ENROL, id, label, code, err);
}

static gboolean
gst_cbir_search_remove (GstCbirSearch * self, const gchar * id)
{
  return do_op (self, CBIR_JOURNAL_REMOVE, id, 0, NULL, NULL);
}

static gboolean
gst_cbir_search_relabel (GstCbirSearch * self, const gchar * id, gint label)
{
  return do_op (self, CBIR_JOURNAL_RELABEL, id, label, NULL, NULL);
}

/* An operation from another pipeline (the sync's network thread): applied
 * once; reported when it changed something. */
static void
on_remote_op (const gchar * payload, gsize len, gpointer user_data)
{
  GstCbirSearch *self = user_data;
  g_autoptr (GError) err = NULL;
  g_autoptr (CbirJournalRecord) r = cbir_journal_record_from_json (payload,
      len, cbir_gallery_get_dim (self->gallery),
      cbir_gallery_get_model_fingerprint (self->gallery), &err);
  gboolean applied = FALSE;
  GstStructure *s;

  if (r == NULL) {
    GST_WARNING_OBJECT (self, "ignored an enrolment operation: %s",
        err->message);
    return;
  }
  if (!cbir_enrolments_apply (self->enrolments, r, &applied, &err)) {
    /* e.g. removing what was removed here already */
    GST_INFO_OBJECT (self, "remote %s of \"%s\" not applied: %s",
        op_nicks[r->op], r->id, err->message);
    return;
  }
  if (!applied)
    return;                     /* ours, or a duplicate */
  s = gst_structure_new ("cbir-enrolment", "op", G_TYPE_STRING,
      op_nicks[r->op], "id", G_TYPE_STRING, r->id, "label", G_TYPE_INT,
      r->label, "ok", G_TYPE_BOOLEAN, TRUE, "remote", G_TYPE_BOOLEAN, TRUE,
      "enrolled", G_TYPE_UINT, cbir_enrolments_n_enrolled (self->enrolments),
      NULL);
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_element (GST_OBJECT (self), s));
}

static gboolean
start_sync (GstCbirSearch * self, const gchar * path)
{
  g_autofree gchar *address = NULL, *topic = NULL, *client_id = NULL;
  g_autoptr (GError) err = NULL;

  GST_OBJECT_LOCK (self);
  address = g_strdup (self->sync_address);
  topic = g_strdup (self->sync_topic);
  client_id = g_strdup (self->sync_client_id);
  if (client_id == NULL || *client_id == '\0') {
    g_free (client_id);
    client_id = g_strdup_printf ("gst-cbir-%s-%s", g_get_host_name (),
        GST_OBJECT_NAME (self));
  }
  GST_OBJECT_UNLOCK (self);
  if (address == NULL || *address == '\0')
    return TRUE;
  if (self->enrolments == NULL) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("sync-address: gallery \"%s\" cannot enrol (it has no float "
            "codes).", path), (NULL));
    return FALSE;
  }
  if (topic == NULL || *topic == '\0') {
    g_autofree gchar *base = g_path_get_basename (path);
    topic = g_strconcat ("cbir/enrolments/", base, NULL);
  }
  g_free (self->origin);
  self->origin = g_strdup (client_id);
  self->sync = gst_cbir_sync_new (GST_ELEMENT (self), address, topic,
      self->origin, on_remote_op, self, &err);
  if (self->sync == NULL) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("Cannot share enrolments through %s: %s", address, err->message),
        (NULL));
    return FALSE;
  }
  GST_INFO_OBJECT (self, "enrolments shared on %s, topic %s, as %s", address,
      topic, self->origin);
  return TRUE;
}

static void
stop_sync (GstCbirSync * sync)
{
  gst_cbir_sync_free (sync, 2000);
}

/* A custom event "cbir-enrol" (op "enrol", "remove" or "relabel"; id;
 * label; region-id), from upstream (in order with the frames: enrols the
 * frame before it) or from the application downstream of the element
 * (gst_element_send_event on the pipeline). TRUE when it was one. */
static gboolean
handle_enrol_event (GstCbirSearch * self, GstEvent * event)
{
  const GstStructure *s = gst_event_get_structure (event);
  const gchar *op, *id;
  gint label = 0, region_id = -1;

  if (!s || !gst_structure_has_name (s, "cbir-enrol"))
    return FALSE;
  op = gst_structure_get_string (s, "op");
  id = gst_structure_get_string (s, "id");
  gst_structure_get_int (s, "label", &label);
  gst_structure_get_int (s, "region-id", &region_id);
  if (g_strcmp0 (op, "remove") == 0)
    gst_cbir_search_remove (self, id);
  else if (g_strcmp0 (op, "relabel") == 0)
    gst_cbir_search_relabel (self, id, label);
  else if (op == NULL || g_strcmp0 (op, "enrol") == 0)
    gst_cbir_search_enrol (self, id, label, region_id);
  else {
    GError *err = g_error_new (GST_RESOURCE_ERROR,
        GST_RESOURCE_ERROR_SETTINGS, "unknown op \"%s\" (enrol, remove or "
        "relabel)", op);
    post_enrolment (self, op, id, label, err);
    g_error_free (err);
  }
  return TRUE;
}

static gboolean
gst_cbir_search_src_event (GstBaseTransform * trans, GstEvent * event)
{
  GstCbirSearch *self = GST_CBIR_SEARCH (trans);

  if (GST_EVENT_TYPE (event) == GST_EVENT_CUSTOM_UPSTREAM &&
      handle_enrol_event (self, event)) {
    gst_event_unref (event);
    return TRUE;
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->src_event (trans, event);
}

/* The stream's id and frame rate for the result's frame fields. */
static gboolean
gst_cbir_search_sink_event (GstBaseTransform * trans, GstEvent * event)
{
  GstCbirSearch *self = GST_CBIR_SEARCH (trans);

  if ((GST_EVENT_TYPE (event) == GST_EVENT_CUSTOM_DOWNSTREAM ||
          GST_EVENT_TYPE (event) == GST_EVENT_CUSTOM_DOWNSTREAM_OOB) &&
      handle_enrol_event (self, event)) {
    gst_event_unref (event);
    return TRUE;
  }
  gst_cbir_stream_info_event (&self->stream, event);
  return GST_BASE_TRANSFORM_CLASS (parent_class)->sink_event (trans, event);
}

static gboolean
gst_cbir_search_set_caps (GstBaseTransform * trans, GstCaps * incaps,
    GstCaps * outcaps)
{
  gst_cbir_stream_info_set_caps (&GST_CBIR_SEARCH (trans)->stream, incaps);
  return TRUE;
}

/* The hit buffers (hits, merged, plain) at least len long, grown together
 * when the k asked of the gallery grows, not on every query. */
static void
ensure_hits (GstCbirSearch * self, guint len)
{
  if (self->hits_len >= len)
    return;
  self->hits = g_renew (CbirHit, self->hits, len);
  self->merged = g_renew (CbirHit, self->merged, len);
  self->plain = g_renew (CbirHit, self->plain, len);
  self->keys = g_renew (gfloat, self->keys, len);
  self->sizes = g_renew (guint, self->sizes, len);
  self->hits_len = len;
}

/* The gallery's hits[0..n-1] (rank order) merged with the enrolled items
 * (the first hit stays the nearest; removed and relabelled items applied),
 * at most k, back into hits; returns how many. */
static guint
merge_enrolled (GstCbirSearch * self, const GstCbirEmbeddingMeta * emb,
    guint k, CbirHit * hits, guint n)
{
  if (self->enrolments == NULL)
    return n;
  n = cbir_enrolments_merge (self->enrolments, self->cur_metric,
      emb->vector, hits, n, k, self->merged);
  memcpy (hits, self->merged, n * sizeof (CbirHit));
  return n;
}

/* Keeps the hits within max_distance, in order; returns how many. */
static guint
within (CbirHit * hits, guint n, gfloat max_distance)
{
  guint i, j;

  for (i = 0, j = 0; i < n; i++)
    if (hits[i].distance <= max_distance)
      hits[j++] = hits[i];
  return j;
}

/* Searches one embedding: hits into self->hits, the answer into a: how
 * many hits are kept (within max-distance), the vote and the match
 * decision. After diffusion the vote reads the plain nearest items, not
 * the hits: diffusion orders the list for retrieval (its mAP), while a
 * label is best read from the nearest items themselves (on camera frames
 * against galleries with printed digits and examples of non-matches,
 * diffusion-ranked hits voted 0.9 to 2.3 points fewer digits right; on an
 * MNIST gallery the two votes are within 0.6 points, see the README).
 * Query expansion's hits are the plain hits of the expanded query: they
 * vote. Otherwise the vote's candidates are the plain nearest items,
 * ranked by local scaling (local-scaling, the default; openset.h): with
 * vote=local-mean (the default) CBIR_LOCAL_MEAN_CANDIDATES (or 10k) of
 * them and each label judged by the mean of its k first
 * (cbir_vote_local_mean), with vote=weighted the k first of
 * CBIR_LOCAL_SCALE_CANDIDATES (or 2k).
 * The match score still reads the plain nearest distance (the first
 * candidate: a Hamming shortlist shorter than the candidates grows to
 * them). */
static void
search_one (GstCbirSearch * self, const GstCbirEmbeddingMeta * emb, guint k,
    gfloat max_distance, gfloat min_match_score, Answer * a)
{
  guint n, n_vote, k_base, n_removed, k_vote;
  gfloat nearest;
  CbirHit *vote;
  gboolean qe = self->cur_rerank == GST_CBIR_RERANK_QUERY_EXPANSION;
  gboolean scaled = g_atomic_int_get (&self->local_scaling) && !qe;
  gboolean local_mean = !qe &&
      g_atomic_int_get (&self->vote) == GST_CBIR_VOTE_LOCAL_MEAN;

  if (cbir_first_non_finite (emb->vector, emb->dim) != emb->dim) {
    /* the searcher matches such a code to nothing; counted, told once */
    GST_OBJECT_LOCK (self);
    gboolean first = self->invalid_codes++ == 0;
    GST_OBJECT_UNLOCK (self);
    if (first)
      GST_ELEMENT_WARNING (self, STREAM, FAILED,
          ("A frame's code holds NaN or infinite values (is the model "
              "broken?): it matches nothing; further ones are counted in "
              "\"invalid-codes\"."), ("frame %" G_GUINT64_FORMAT,
              self->frame));
  }
  /* removed gallery items: as many more hits asked of the gallery */
  n_removed = self->enrolments ?
      cbir_enrolments_n_removed (self->enrolments) : 0;
  k_base = k + n_removed;
  /* the vote's candidates (local scaling re-ranks them) */
  k_vote = local_mean ? MAX (10 * k, CBIR_LOCAL_MEAN_CANDIDATES) :
      scaled ? MAX (2 * k, CBIR_LOCAL_SCALE_CANDIDATES) : k;
  ensure_hits (self, MAX (k_base, k_vote + n_removed));
  if (k_vote > k && self->cur_rerank == GST_CBIR_RERANK_NONE &&
      self->cur_shortlist == 0) {
    /* the hits are the plain k nearest, the first of the candidates of an
     * exact search: one search for both */
    vote = self->plain;
    n_vote = cbir_searcher_search_plain (self->searcher, emb->vector,
        k_vote + n_removed, vote);
    n_vote = merge_enrolled (self, emb, k_vote, vote, n_vote);
    n = MIN (n_vote, k);
    memcpy (self->hits, vote, n * sizeof (CbirHit));
  } else {
    n = cbir_searcher_search (self->searcher, emb->vector, k_base,
        self->hits);
    n = merge_enrolled (self, emb, k, self->hits, n);
    vote = self->hits;
    n_vote = n;
    if (self->cur_rerank == GST_CBIR_RERANK_DIFFUSION || k_vote > k) {
      vote = self->plain;
      n_vote = cbir_searcher_search_plain (self->searcher, emb->vector,
          k_vote + n_removed, vote);
      n_vote = merge_enrolled (self, emb, k_vote, vote, n_vote);
    }
  }
  /* the plain nearest distance for the match score: the first of the
   * plain hits (enrolments applied: after a removal the diffused first hit
   * need not be the plain nearest remaining); query expansion searched
   * another vector */
  if (self->cur_rerank == GST_CBIR_RERANK_QUERY_EXPANSION || n_vote == 0)
    nearest = cbir_searcher_nearest_distance (self->searcher, emb->vector);
  else
    nearest = vote[0].distance;
  /* hits in rank order; after re-ranking not always by distance */
  n = within (self->hits, n, max_distance);
  a->n = n;
  if (vote != self->hits)
    n_vote = within (vote, n_vote, max_distance);
  else
    n_vote = n;
  a->match_score = cbir_match_scorer_score (self->scorer, nearest);
  if (local_mean) {
    if (scaled)
      cbir_match_scorer_scale_hits (self->scorer, vote, n_vote, n_vote,
          self->keys);
    if (self->enrolments)
      cbir_enrolments_label_sizes (self->enrolments, vote, n_vote,
          self->sizes);
    else
      cbir_hits_label_sizes (self->label_sizes, vote, n_vote, self->sizes);
    cbir_vote_local_mean (vote, scaled ? self->keys : NULL, self->sizes,
        n_vote, k, &a->label, &a->confidence);
  } else {
    if (scaled)
      n_vote = cbir_match_scorer_scale_hits (self->scorer, vote, n_vote, k,
          NULL);
    cbir_vote (vote, n_vote, &a->label, &a->confidence);
  }
  /* the gallery's examples of non-matches won: no match either */
  a->match = n > 0 && a->match_score >= min_match_score &&
      a->label != CBIR_LABEL_NOT_A_MATCH;
  if (!a->match) {
    a->label = -1;
    a->confidence = 0.0f;
  }
}

/* Asks upstream which model encodes the frames (cbirencode answers
 * GST_CBIR_MODEL_QUERY_NAME): a gallery of another model is an error when
 * the element starts, before any frame, not at the first frame (where
 * GStreamer 1.22's gst-launch could hang on the early error). Without an
 * answer (no cbirencode yet, a dynamic pipeline) the first frame's code is
 * checked as before. */
static gboolean
check_upstream_model (GstCbirSearch * self)
{
  GstBaseTransform *trans = GST_BASE_TRANSFORM (self);
  GstQuery *q = gst_query_new_custom (GST_QUERY_CUSTOM,
      gst_structure_new_empty (GST_CBIR_MODEL_QUERY_NAME));
  const gchar *gfp = cbir_gallery_get_model_fingerprint (self->gallery);
  gboolean ok = TRUE;

  if (gst_pad_peer_query (trans->sinkpad, q)) {
    const GstStructure *s = gst_query_get_structure (q);
    const gchar *fp = gst_structure_get_string (s, "fingerprint");
    guint dim = 0;

    gst_structure_get_uint (s, "dim", &dim);
    if (fp && g_strcmp0 (fp, gfp) != 0) {
      GST_ELEMENT_ERROR (self, STREAM, WRONG_TYPE,
          ("Gallery \"%s\" was made by another model: gallery model "
              "fingerprint %s, frames encoded by model %s.",
              cbir_gallery_get_path (self->gallery), gfp, fp), (NULL));
      ok = FALSE;
    } else if (fp && dim != self->query_dim) {
      GST_ELEMENT_ERROR (self, STREAM, WRONG_TYPE,
          ("Code of %u values does not fit gallery \"%s\" (%u values).",
              dim, cbir_gallery_get_path (self->gallery), self->query_dim),
          (NULL));
      ok = FALSE;
    } else if (fp) {
      self->checked_fingerprint = g_intern_string (fp);
      GST_INFO_OBJECT (self, "upstream model %s fits the gallery", fp);
    }
  }
  gst_query_unref (q);
  return ok;
}

/* The first embedding of a model is checked against the gallery; FALSE
 * (and an error posted) when it does not fit. */
static gboolean
check_embedding (GstCbirSearch * self, const GstCbirEmbeddingMeta * emb)
{
  if (emb->model_fingerprint != self->checked_fingerprint) {
    const gchar *gfp = cbir_gallery_get_model_fingerprint (self->gallery);

    if (g_strcmp0 (gfp, emb->model_fingerprint) != 0)
      goto wrong_model;
    if (emb->dim != self->query_dim)
      goto wrong_dim;
    self->checked_fingerprint = emb->model_fingerprint;
  } else if (emb->dim != self->query_dim) {
    goto wrong_dim;
  }
  return TRUE;

  /* ERRORS */
wrong_model:
  {
    GST_ELEMENT_ERROR (self, STREAM, WRONG_TYPE,
        ("Gallery \"%s\" was made by another model: gallery model fingerprint "
            "%s, frames encoded by model %s.",
            cbir_gallery_get_path (self->gallery),
            cbir_gallery_get_model_fingerprint (self->gallery),
            emb->model_fingerprint ? emb->model_fingerprint : "(none)"),
        (NULL));
    return FALSE;
  }
wrong_dim:
  {
    GST_ELEMENT_ERROR (self, STREAM, WRONG_TYPE,
        ("Code of %u values does not fit gallery \"%s\" (%u values).",
            emb->dim, cbir_gallery_get_path (self->gallery), self->query_dim),
        (NULL));
    return FALSE;
  }
}

static void
get_settings (GstCbirSearch * self, guint * k, gfloat * max_distance,
    gfloat * min_match_score, gboolean * post)
{
  GST_OBJECT_LOCK (self);
  *k = self->k;
  *max_distance = self->max_distance;
  *min_match_score = min_match_score_in_use (self);
  *post = self->post_messages;
  GST_OBJECT_UNLOCK (self);

  ensure_hits (self, *k);
}

/* Keeps a copy of the codes of the frame just searched, for enrol. */
static void
remember_codes (GstCbirSearch * self, GstCbirEmbeddingMeta ** embs, guint n)
{
  guint i;

  g_mutex_lock (&self->last_lock);
  clear_last_codes (self);
  for (i = 0; i < n; i++) {
    LastCode c = { embs[i]->region_id, embs[i]->dim,
      g_memdup2 (embs[i]->vector, embs[i]->dim * sizeof (gfloat))
    };
    g_array_append_val (self->last_codes, c);
  }
  self->last_frame = self->frame;
  g_mutex_unlock (&self->last_lock);
}

/* Frames with regions: each region's embedding is searched, its result
 * added to its ROI as the param "cbir-result" and posted (with the region's
 * id and box). Takes regions. */
static GstFlowReturn
search_regions (GstCbirSearch * self, GstBuffer * buf, GPtrArray * regions)
{
  guint k, i;
  gfloat max_distance, min_match_score;
  gboolean post;
  Answer a;
  GList *messages = NULL, *l;

  for (i = 0; i < regions->len; i++)
    if (!check_embedding (self, g_ptr_array_index (regions, i))) {
      g_ptr_array_free (regions, TRUE);
      return GST_FLOW_ERROR;
    }
  get_settings (self, &k, &max_distance, &min_match_score, &post);
  if (self->enrolments)
    remember_codes (self, (GstCbirEmbeddingMeta **) regions->pdata,
        regions->len);

  for (i = 0; i < regions->len; i++) {
    const GstCbirEmbeddingMeta *emb = g_ptr_array_index (regions, i);
    GstVideoRegionOfInterestMeta *roi =
        gst_buffer_get_video_region_of_interest_meta_id (buf, emb->region_id);
    GstStructure *s;

    search_one (self, emb, k, max_distance, min_match_score, &a);
    s = make_result_structure (self, buf, self->hits, &a);
    gst_structure_set (s, "region-id", G_TYPE_INT, emb->region_id, NULL);
    if (roi) {
      /* the ROI's param: a copy without the box (videoscale moves the box,
       * the param would keep a stale one) */
      gst_cbir_roi_set_param (roi, s);
      /* (and a copy that puts it back where videoconvert/videoscale drop
       * the ROI's params: see gstcbirmeta.c) */
      gst_buffer_add_cbir_region_result (buf, s);
      gst_structure_set (s, "x", G_TYPE_UINT, roi->x, "y", G_TYPE_UINT,
          roi->y, "width", G_TYPE_UINT, roi->w, "height", G_TYPE_UINT,
          roi->h, NULL);
    } else {
      GST_WARNING_OBJECT (self, "no region of interest with id %d for an "
          "embedding", emb->region_id);
    }
    gst_structure_set (s, "n-regions", G_TYPE_UINT, regions->len, NULL);
    GST_LOG_OBJECT (self, "frame %" G_GUINT64_FORMAT " region %d: label %d "
        "(%.3f, match score %.3f), %u hits", self->frame, emb->region_id,
        a.label, a.confidence, a.match_score, a.n);
    if (post)
      messages = g_list_prepend (messages, s);
    else
      gst_structure_free (s);
  }
  g_ptr_array_free (regions, TRUE);
  self->frame++;

  /* posted after the search, in region order */
  messages = g_list_reverse (messages);
  for (l = messages; l; l = l->next)
    gst_element_post_message (GST_ELEMENT (self),
        gst_message_new_element (GST_OBJECT (self), l->data));
  g_list_free (messages);
  return GST_FLOW_OK;
}

static GstFlowReturn
gst_cbir_search_transform_ip (GstBaseTransform * trans, GstBuffer * buf)
{
  GstCbirSearch *self = GST_CBIR_SEARCH (trans);
  GstCbirEmbeddingMeta *emb;
  GstStructure *s;
  GstCbirResultMeta *rm;
  guint k;
  gfloat max_distance, min_match_score;
  gboolean post;
  Answer a;
  GPtrArray *regions = NULL;
  gpointer state = NULL;
  GstMeta *meta;

  gst_cbir_stream_info_query_source (&self->stream,
      GST_BASE_TRANSFORM_SINK_PAD (self));
  /* the whole frame's embedding, or those of its regions */
  emb = NULL;
  while ((meta = gst_buffer_iterate_meta_filtered (buf, &state,
              gst_cbir_embedding_meta_api_get_type ()))) {
    GstCbirEmbeddingMeta *e = (GstCbirEmbeddingMeta *) meta;

    if (e->region_id < 0) {
      if (emb == NULL)
        emb = e;
    } else {
      if (regions == NULL)
        regions = g_ptr_array_new ();
      g_ptr_array_add (regions, e);
    }
  }
  if (regions)
    return search_regions (self, buf, regions);
  if (emb == NULL) {
    if (!self->warned_no_embedding) {
      /* a stream that had codes before has cbirencode: a frame without a
       * digit, not a missing element */
      self->warned_no_embedding = TRUE;
      if (self->checked_fingerprint)
        GST_ELEMENT_WARNING (self, STREAM, FORMAT,
            ("A frame without a code (cbirencode found no digit in it) "
                "passes through unsearched; so will later ones."), (NULL));
      else
        GST_ELEMENT_WARNING (self, STREAM, FORMAT,
            ("Frames without a code pass through unsearched: is cbirencode "
                "upstream (or has it found no digit yet)?"), (NULL));
    }
    self->frame++;
    return GST_FLOW_OK;
  }

  if (!check_embedding (self, emb))
    return GST_FLOW_ERROR;

  get_settings (self, &k, &max_distance, &min_match_score, &post);
  if (self->enrolments)
    remember_codes (self, &emb, 1);
  search_one (self, emb, k, max_distance, min_match_score, &a);

  G_STATIC_ASSERT (sizeof (CbirHit) == sizeof (GstCbirHit));
  rm = gst_buffer_add_cbir_result_meta (buf, (const GstCbirHit *) self->hits,
      a.n, a.label, a.confidence, cbir_metric_to_string (self->cur_metric));
  if (rm)
    rm->match_score = a.match_score;
  s = make_result_structure (self, buf, self->hits, &a);
  gst_buffer_add_cbir_result_structure (buf, s);
  self->frame++;

  GST_LOG_OBJECT (self, "frame %" G_GUINT64_FORMAT ": label %d (%.3f, "
      "match score %.3f), %u hits", self->frame - 1, a.label, a.confidence,
      a.match_score, a.n);
  if (post)
    gst_element_post_message (GST_ELEMENT (self),
        gst_message_new_element (GST_OBJECT (self), s));
  else
    gst_structure_free (s);
  return GST_FLOW_OK;
}
