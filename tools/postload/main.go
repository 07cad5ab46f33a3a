// postload drives POST /events at a fixed rate (open loop) from many
// keep-alive connections, every batch with events no other batch has (with
// -events 10: the start and end of 5 new sessions), and
// prints what it got as one JSON object: requests, statuses, accepted
// events per second, and latency percentiles measured from each request's
// scheduled send time (so a slow server cannot hide its queueing: no
// coordinated omission).
//
//	go run ./tools/postload -url http://127.0.0.1:8000/events -rate 2000 -duration 60s
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

type result struct {
	latency time.Duration
	status  int // 0: transport error
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8000/events", "the POST /events URL")
	rate := flag.Float64("rate", 2000, "requests per second to send (open loop)")
	duration := flag.Duration("duration", 60*time.Second, "how long to send")
	connections := flag.Int("connections", 64, "concurrent keep-alive connections")
	events := flag.Int("events", 10, "events per request (1 to 10)")
	key := flag.String("key", "", "X-API-Key to send, if any")
	tag := flag.Uint64("tag", uint64(time.Now().UnixNano()), "makes this run's session ids unique")
	day := flag.String("day", "2016-11-06", "the date of the events' timestamps")
	probeEvery := flag.Duration("probe-every", 0, "also post a completed session of a new player this often and time until GET /models/completed-sessions/{player} shows it (0: no probes)")
	flag.Parse()
	if *events < 1 || *events > 10 || *rate <= 0 || *connections < 1 {
		fmt.Fprintln(os.Stderr, "postload: -events must be 1 to 10, -rate and -connections positive")
		os.Exit(2)
	}

	transport := &http.Transport{MaxIdleConns: *connections, MaxIdleConnsPerHost: *connections, MaxConnsPerHost: *connections}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	total := int(*rate * duration.Seconds())
	slots := make(chan int, total)
	results := make([]result, total)
	start := time.Now()
	interval := time.Duration(float64(time.Second) / *rate)
	countries := []string{"FI", "SE", "NO", "DK", "DE", "FR", "IT", "ES", "NI", "US"}

	var workers sync.WaitGroup
	for w := 0; w < *connections; w++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			random := rand.New(rand.NewSource(int64(*tag) + int64(w)))
			var body bytes.Buffer
			var player string
			var startMinute, length int
			for slot := range slots {
				scheduled := start.Add(time.Duration(slot) * interval)
				if wait := time.Until(scheduled); wait > 0 {
					time.Sleep(wait)
				}
				body.Reset()
				body.WriteByte('[')
				for i := 0; i < *events; i++ {
					if i > 0 {
						body.WriteByte(',')
					}
					// Events 2k and 2k+1 are the start and the end of one
					// session (a player's session of 1 to 60 minutes).
					n := uint64(slot)*uint64(*events) + uint64(i/2)
					session := fmt.Sprintf("%08x-%04x-4%03x-8000-%012x", uint32(*tag), uint16(*tag>>32), n>>48&0xfff, n&0xffffffffffff)
					if i%2 == 0 {
						player = fmt.Sprintf("%016x%016x", *tag, random.Uint64())
						startMinute = random.Intn(22 * 60)
						length = 1 + random.Intn(60)
						fmt.Fprintf(&body, `{"event":"start","ts":"%s","session_id":"%s","player_id":"%s","country":"%s"}`, stamp(*day, startMinute, random), session, player, countries[random.Intn(len(countries))])
					} else {
						fmt.Fprintf(&body, `{"event":"end","ts":"%s","session_id":"%s","player_id":"%s"}`, stamp(*day, startMinute+length, random), session, player)
					}
				}
				body.WriteByte(']')
				request, _ := http.NewRequest("POST", *url, bytes.NewReader(body.Bytes()))
				request.Header.Set("content-type", "application/json")
				if *key != "" {
					request.Header.Set("x-api-key", *key)
				}
				response, err := client.Do(request)
				status := 0
				if err == nil {
					io.Copy(io.Discard, response.Body)
					response.Body.Close()
					status = response.StatusCode
				}
				results[slot] = result{latency: time.Since(scheduled), status: status}
			}
		}()
	}
	var probes probeResults
	probesDone := make(chan struct{})
	go func() {
		defer close(probesDone)
		if *probeEvery > 0 {
			probes = probe(client, *url, *key, *tag, *day, *probeEvery, start.Add(*duration))
		}
	}()
	for slot := 0; slot < total; slot++ {
		slots <- slot
	}
	close(slots)
	workers.Wait()
	seconds := time.Since(start).Seconds()
	<-probesDone

	statuses := map[string]int{}
	latencies := make([]float64, 0, total)
	accepted := 0
	for _, r := range results {
		statuses[fmt.Sprint(r.status)]++
		latencies = append(latencies, float64(r.latency.Microseconds())/1000)
		if r.status == 202 {
			accepted += *events
		}
	}
	// p99 of each 10-second window of scheduled sends: shows whether slow
	// answers come in bursts (a flush, a fold) or all along.
	var windows [][]float64
	for slot, r := range results {
		w := int(float64(slot) / float64(*rate) / 10)
		for len(windows) <= w {
			windows = append(windows, nil)
		}
		windows[w] = append(windows[w], float64(r.latency.Microseconds())/1000)
	}
	windowP99 := make([]float64, len(windows))
	for i, window := range windows {
		sort.Float64s(window)
		windowP99[i] = window[int(0.99*float64(len(window)-1))]
	}
	sort.Float64s(latencies)
	pick := func(q float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[int(q*float64(len(latencies)-1))]
	}
	out := map[string]any{
		"requests": total, "statuses": statuses, "events_accepted": accepted, "seconds": seconds,
		"requests_per_second_offered": *rate, "events_per_second_accepted": float64(accepted) / seconds,
		"p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99), "max_ms": pick(1.0),
		"connections": *connections, "events_per_request": *events, "p99_ms_per_10s": windowP99,
	}
	if *probeEvery > 0 {
		sort.Float64s(probes.lags)
		out["probes"] = len(probes.lags) + probes.unseen
		out["probes_unseen_after_30s"] = probes.unseen
		if n := len(probes.lags); n > 0 {
			out["visible_after_s_median"] = probes.lags[n/2]
			out["visible_after_s_max"] = probes.lags[n-1]
		}
	}
	encoded, _ := json.Marshal(out)
	fmt.Println(string(encoded))
	if statuses["202"] != total {
		fmt.Fprintln(os.Stderr, "postload: not every answer was 202:", strings.TrimSpace(fmt.Sprint(statuses)))
	}
}

// stamp is a timestamp `minute` minutes into `day`, with random seconds.
func stamp(day string, minute int, random *rand.Rand) string {
	return fmt.Sprintf("%sT%02d:%02d:%02d.%06d", day, minute/60, minute%60, random.Intn(60), random.Intn(1000000))
}

type probeResults struct {
	lags   []float64 // seconds from the 202 to the session in the GET answer
	unseen int       // probes not visible within 30 s
}

// probe posts, every `every` until `until`, a completed session of a new
// player, then polls that player's completed sessions until it shows.
func probe(client *http.Client, eventsURL, key string, tag uint64, day string, every time.Duration, until time.Time) probeResults {
	base := strings.TrimSuffix(eventsURL, "/events")
	var results probeResults
	var mutex sync.Mutex
	var waits sync.WaitGroup
	for n := 0; time.Now().Before(until); n++ {
		player := fmt.Sprintf("%016x%016x", tag^0xffff, uint64(n))
		session := fmt.Sprintf("%08x-%04x-4fff-9000-%012x", uint32(tag), uint16(tag>>32), n)
		body := fmt.Sprintf(`[{"event":"start","ts":"%sT10:00:00.000000","session_id":"%s","player_id":"%s","country":"FI"},`+
			`{"event":"end","ts":"%sT10:30:00.000000","session_id":"%s","player_id":"%s"}]`, day, session, player, day, session, player)
		request, _ := http.NewRequest("POST", eventsURL, strings.NewReader(body))
		request.Header.Set("content-type", "application/json")
		if key != "" {
			request.Header.Set("x-api-key", key)
		}
		response, err := client.Do(request)
		if err == nil {
			io.Copy(io.Discard, response.Body)
			response.Body.Close()
		}
		if err != nil || response.StatusCode != 202 {
			time.Sleep(every)
			continue
		}
		acknowledged := time.Now()
		waits.Add(1)
		go func() {
			defer waits.Done()
			for time.Since(acknowledged) < 30*time.Second {
				request, _ := http.NewRequest("GET", base+"/models/completed-sessions/"+player, nil)
				if key != "" {
					request.Header.Set("x-api-key", key)
				}
				if response, err := client.Do(request); err == nil {
					text, _ := io.ReadAll(response.Body)
					response.Body.Close()
					if response.StatusCode == 200 && strings.Contains(string(text), session) {
						mutex.Lock()
						results.lags = append(results.lags, time.Since(acknowledged).Seconds())
						mutex.Unlock()
						return
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
			mutex.Lock()
			results.unseen++
			mutex.Unlock()
		}()
		time.Sleep(every)
	}
	waits.Wait()
	return results
}
