/* Big-endian integer helpers (STYLE §6): never cast pointers to encode integers. */
#ifndef UP_BASE_BYTES_H
#define UP_BASE_BYTES_H

#include <stdint.h>

static inline uint16_t up_rd_u16be(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline uint32_t up_rd_u24be(const uint8_t *p)
{
    return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static inline uint32_t up_rd_u32be(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t up_rd_u64be(const uint8_t *p)
{
    return (uint64_t)up_rd_u32be(p) << 32 | up_rd_u32be(p + 4);
}

static inline void up_wr_u16be(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void up_wr_u24be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 16);
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)v;
}

static inline void up_wr_u32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void up_wr_u64be(uint8_t *p, uint64_t v)
{
    up_wr_u32be(p, (uint32_t)(v >> 32));
    up_wr_u32be(p + 4, (uint32_t)v);
}

#endif
