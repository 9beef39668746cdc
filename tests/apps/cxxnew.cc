/*
 * C++ allocation (tests/integ/test_cxx.py): new/delete, new[]/delete[],
 * std::vector growth (through a counting allocator that forwards to
 * std::allocator, i.e. operator new), and one leaked `new Widget` from
 * kpwidgets::make_leaked_widget(int). Prints its counts on stdout:
 *   allocs=A frees=F bytes=B leaked_bytes=L leaked_blocks=N
 * No iostream/stdio before the output (they would allocate buffers):
 * snprintf + write.
 *
 * libstdc++ itself allocates at start-up (the exception emergency pool,
 * ~72 KiB, never freed but by __gnu_cxx::__freeres); the test accounts for
 * it, the counts here are only the app's.
 */
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <unistd.h>
#include <vector>

static long n_alloc, n_free, n_bytes;

template <class T> struct CountingAlloc {
	typedef T value_type;
	CountingAlloc() {}
	template <class U> CountingAlloc(const CountingAlloc<U> &) {}
	T *allocate(std::size_t n)
	{
		n_alloc++;
		n_bytes += (long)(n * sizeof(T));
		return std::allocator<T>().allocate(n);
	}
	void deallocate(T *p, std::size_t n)
	{
		n_free++;
		std::allocator<T>().deallocate(p, n);
	}
};
template <class T, class U>
bool operator==(const CountingAlloc<T> &, const CountingAlloc<U> &) { return true; }
template <class T, class U>
bool operator!=(const CountingAlloc<T> &, const CountingAlloc<U> &) { return false; }

struct Widget {
	char name[40];
	long id;
	double weight;
	explicit Widget(long i) : id(i), weight(1.5) { std::memset(name, 'w', sizeof(name)); }
};

static Widget *keep;

namespace kpwidgets {
__attribute__((noinline)) Widget *make_leaked_widget(int id)
{
	Widget *w = new Widget(id); /* leaked */
	n_alloc++;
	n_bytes += sizeof(Widget);
	return w;
}
} // namespace kpwidgets

__attribute__((noinline)) static void churn()
{
	for (int i = 0; i < 1000; i++) {
		Widget *w = new Widget(i);
		delete w;
		int *a = new int[i + 1];
		a[i] = i;
		delete[] a;
	}
	n_alloc += 2000;
	n_free += 2000;
	for (int i = 0; i < 1000; i++)
		n_bytes += (long)sizeof(Widget) + (long)((i + 1) * sizeof(int));

	std::vector<int, CountingAlloc<int> > v;
	for (int i = 0; i < 5000; i++)
		v.push_back(i);
	std::vector<Widget *, CountingAlloc<Widget *> > ws;
	for (int i = 0; i < 100; i++) {
		ws.push_back(new Widget(i));
		n_alloc++;
		n_bytes += sizeof(Widget);
	}
	for (Widget *w : ws) {
		delete w;
		n_free++;
	}
}

int main()
{
	churn();
	keep = kpwidgets::make_leaked_widget(7);
	char buf[256];
	int n = std::snprintf(buf, sizeof(buf),
			      "allocs=%ld frees=%ld bytes=%ld leaked_bytes=%zu "
			      "leaked_blocks=1 widget_size=%zu\n",
			      n_alloc, n_free, n_bytes, sizeof(Widget), sizeof(Widget));
	return write(1, buf, (size_t)n) == n ? 0 : 3;
}
