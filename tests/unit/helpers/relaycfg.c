#include "relaycfg.h"

#include <string.h>

void test_relay_cfg(struct up_relay_cfg *rc, const char *secret)
{
    memset(rc, 0, sizeof(*rc));
    rc->listen = "127.0.0.1:0";
    rc->secret = (const uint8_t *)secret;
    rc->secret_len = strlen(secret);
    rc->head_timeout_ms = 10000;
    rc->max_head = 16384;
    rc->leeway_s = 30;
    rc->upstream_timeout_ms = 60000;
    rc->keepalive_timeout_ms = 60000;
    rc->real_ip_header = "X-Real-IP";
    rc->xff_header = "X-Forwarded-For";
    up_link_cfg_defaults(&rc->link);
}
