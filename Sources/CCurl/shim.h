#ifndef CCR_CURL_SHIM_H
#define CCR_CURL_SHIM_H
// Non-variadic wrappers around libcurl's variadic setopt/getinfo: one per argument kind.
#include <curl/curl.h>
#include <string.h>

static inline CURLcode ccr_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccr_easy_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccr_easy_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccr_easy_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }

/// Sets a blob option (e.g. CURLOPT_CAINFO_BLOB); libcurl copies the bytes.
static inline CURLcode ccr_easy_setopt_blob(CURL *h, CURLoption o, void *data, size_t len) {
    struct curl_blob blob = { data, len, CURL_BLOB_COPY };
    return curl_easy_setopt(h, o, &blob);
}

static inline size_t ccr_discard_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
    (void)ptr; (void)userdata;
    return size * nmemb;
}

/// A probe only needs the status line: the body is read and dropped.
static inline CURLcode ccr_easy_discard_body(CURL *h) {
    return curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, ccr_discard_body);
}

/// A body collected into a caller's buffer of fixed size; what does not fit is dropped (`len` stops
/// at `cap`, `total` counts everything).
struct ccr_buffer {
    unsigned char *data;
    size_t len;
    size_t cap;
    size_t total;
};

static inline size_t ccr_collect_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
    struct ccr_buffer *b = (struct ccr_buffer *)userdata;
    size_t n = size * nmemb;
    size_t room = b->cap - b->len;
    size_t take = n < room ? n : room;
    memcpy(b->data + b->len, ptr, take);
    b->len += take;
    b->total += n;
    return n;
}

static inline CURLcode ccr_easy_collect_body(CURL *h, struct ccr_buffer *b) {
    curl_easy_setopt(h, CURLOPT_WRITEDATA, (void *)b);
    return curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, ccr_collect_body);
}

static inline CURLcode ccr_easy_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode ccr_easy_getinfo_off_t(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode ccr_easy_getinfo_pointer(CURL *h, CURLINFO i, void **v) { return curl_easy_getinfo(h, i, v); }

/// The easy handle and result of a finished transfer, or NULL when `msg` is not CURLMSG_DONE.
static inline CURL *ccr_multi_done_handle(CURLMsg *msg, CURLcode *result) {
    if (msg->msg != CURLMSG_DONE) return NULL;
    *result = msg->data.result;
    return msg->easy_handle;
}

#endif
