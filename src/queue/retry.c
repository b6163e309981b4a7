/* The retry handler's timing. See retry.h. */
#include "queue/retry.h"

#include <curl/curl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

double lx_retry_delay_s(const lx_config *c, int n, double u)
{
    double d = c->retry.delay_s * pow(c->retry.backoff_multiplier, n > 1 ? n - 1 : 0);
    d *= 0.8 + 0.4 * u;
    return isfinite(d) && d < c->retry.max_delay_s ? d : c->retry.max_delay_s;
}

double lx_retry_after_s(lx_slice value, int64_t now_wall_s)
{
    char text[64];
    if (value.len == 0 || value.len >= sizeof text) return -1;
    memcpy(text, value.p, value.len);
    text[value.len] = '\0';
    char *end;
    if (text[0] >= '0' && text[0] <= '9') {
        double s = strtod(text, &end);
        while (*end == ' ' || *end == '\t')
            end++;
        return *end == '\0' && isfinite(s) ? s : -1;
    }
    time_t when = curl_getdate(text, NULL); /* an HTTP-date */
    if (when < 0) return -1;
    return when > now_wall_s ? (double)(when - now_wall_s) : 0;
}
