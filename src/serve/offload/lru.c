/* lru.c: hash table + doubly linked list with a byte budget (lru.h). */
#include "common/util.h"
#include "offload/lru.h"

#include <pthread.h>

#include "common/banned.h"

struct kvo_lru {
	pthread_mutex_t mu;
	struct kvo_lru_ent **tab;
	size_t nbucket;
	struct kvo_lru_ent head; /* head.next = most recent, head.prev = least */
	uint64_t used, budget, entries, evictions;
	kvo_lru_evict_fn on_evict;
	void *ctx;
};

static size_t bucket(const struct kvo_lru *c, const struct kvo_key *k)
{
	uint64_t h;
	memcpy(&h, k->b, 8);
	return (size_t)(h % c->nbucket);
}

struct kvo_lru *kvo_lru_new(uint64_t budget, kvo_lru_evict_fn on_evict, void *ctx)
{
	struct kvo_lru *c = xcalloc(1, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	c->nbucket = 4096;
	c->tab = xcalloc(c->nbucket, sizeof(*c->tab));
	c->head.next = c->head.prev = &c->head;
	c->budget = budget;
	c->on_evict = on_evict;
	c->ctx = ctx;
	return c;
}

static void ent_free(struct kvo_lru_ent *e)
{
	free(e->data);
	free(e);
}

static void grow(struct kvo_lru *c)
{
	size_t n = c->nbucket * 2;
	struct kvo_lru_ent **t = xcalloc(n, sizeof(*t));
	for (size_t i = 0; i < c->nbucket; i++) {
		struct kvo_lru_ent *e = c->tab[i], *nx;
		for (; e; e = nx) {
			uint64_t h;
			nx = e->hnext;
			memcpy(&h, e->key.b, 8);
			e->hnext = t[h % n];
			t[h % n] = e;
		}
	}
	free(c->tab);
	c->tab = t;
	c->nbucket = n;
}

/* Unlinks e from table and list; frees it unless referenced. Lock held. */
static void unlink_ent(struct kvo_lru *c, struct kvo_lru_ent *e)
{
	struct kvo_lru_ent **pp = &c->tab[bucket(c, &e->key)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	e->prev->next = e->next;
	e->next->prev = e->prev;
	e->linked = false;
	c->used -= e->size;
	c->entries--;
	if (!e->refs)
		ent_free(e);
}

static struct kvo_lru_ent *find(struct kvo_lru *c, const struct kvo_key *k)
{
	struct kvo_lru_ent *e = c->tab[bucket(c, k)];
	while (e && memcmp(e->key.b, k->b, 32))
		e = e->hnext;
	return e;
}

static void to_front(struct kvo_lru *c, struct kvo_lru_ent *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	e->next = c->head.next;
	e->prev = &c->head;
	c->head.next->prev = e;
	c->head.next = e;
}

int kvo_lru_insert(struct kvo_lru *c, const struct kvo_key *k, uint8_t *data, size_t size)
{
	struct kvo_lru_ent *e, *old;

	if (size > c->budget) {
		free(data);
		return -1;
	}
	e = xcalloc(1, sizeof(*e));
	e->key = *k;
	e->data = data;
	e->size = size;
	pthread_mutex_lock(&c->mu);
	old = find(c, k);
	if (old)
		unlink_ent(c, old);
	while (c->used + size > c->budget && c->head.prev != &c->head) {
		struct kvo_lru_ent *v = c->head.prev;
		if (c->on_evict)
			c->on_evict(v, c->ctx);
		c->evictions++;
		unlink_ent(c, v);
	}
	if (c->entries >= c->nbucket)
		grow(c);
	e->hnext = c->tab[bucket(c, k)];
	c->tab[bucket(c, k)] = e;
	e->prev = &c->head;
	e->next = c->head.next;
	c->head.next->prev = e;
	c->head.next = e;
	e->linked = true;
	c->used += size;
	c->entries++;
	pthread_mutex_unlock(&c->mu);
	return 0;
}

struct kvo_lru_ent *kvo_lru_get(struct kvo_lru *c, const struct kvo_key *k)
{
	struct kvo_lru_ent *e;
	pthread_mutex_lock(&c->mu);
	e = find(c, k);
	if (e) {
		to_front(c, e);
		e->refs++;
	}
	pthread_mutex_unlock(&c->mu);
	return e;
}

struct kvo_lru_ent *kvo_lru_get_other(struct kvo_lru *c, const struct kvo_key *k,
				      uint64_t pick)
{
	struct kvo_lru_ent *e, *found = NULL;
	uint64_t n = 0, want;
	pthread_mutex_lock(&c->mu);
	if (c->entries > 1) {
		want = pick % (c->entries - 1);
		for (e = c->head.next; e != &c->head; e = e->next) {
			if (!e->data || !memcmp(e->key.b, k->b, 32))
				continue;
			found = e;
			if (n++ == want)
				break;
		}
	}
	if (found)
		found->refs++;
	pthread_mutex_unlock(&c->mu);
	return found;
}

void kvo_lru_put_ref(struct kvo_lru *c, struct kvo_lru_ent *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&c->mu);
	if (--e->refs == 0 && !e->linked)
		ent_free(e);
	pthread_mutex_unlock(&c->mu);
}

bool kvo_lru_contains(struct kvo_lru *c, const struct kvo_key *k)
{
	bool r;
	pthread_mutex_lock(&c->mu);
	r = find(c, k) != NULL;
	pthread_mutex_unlock(&c->mu);
	return r;
}

bool kvo_lru_remove(struct kvo_lru *c, const struct kvo_key *k)
{
	struct kvo_lru_ent *e;
	pthread_mutex_lock(&c->mu);
	e = find(c, k);
	if (e)
		unlink_ent(c, e);
	pthread_mutex_unlock(&c->mu);
	return e != NULL;
}

void kvo_lru_stats(struct kvo_lru *c, struct kvo_lru_stats *s)
{
	pthread_mutex_lock(&c->mu);
	s->used = c->used;
	s->budget = c->budget;
	s->entries = c->entries;
	s->evictions = c->evictions;
	pthread_mutex_unlock(&c->mu);
}

void kvo_lru_free(struct kvo_lru *c)
{
	struct kvo_lru_ent *e, *nx;
	if (!c)
		return;
	for (e = c->head.next; e != &c->head; e = nx) {
		nx = e->next;
		ent_free(e); /* no references may remain at free time */
	}
	free(c->tab);
	pthread_mutex_destroy(&c->mu);
	free(c);
}
